"""Verdicts per claim (THEORY.md's C1..C7, E1..E4) from the measured files, never by hand.

    study = Study(runs, predictions, c1)   # runs.csv rows, predict frames and C1 frames per (policy, run)
    table = claims_table(study)            # CLAIM_COLUMNS, one row per claim and policy

Each claim is one small function (``CLAIMS``) returning (verdict, metric, value, tolerance,
evidence) or None where the scale made no run that tests it. Tolerances are in ``TOLERANCE``:
the exact control must agree to round-off; practice gets a stated, fixed allowance. A claim
that fails in practice is reported as failing, with its numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from grpo_amp import theory
from grpo_amp.runs import PRACTICE_POLICIES
from grpo_amp.schema import CLAIM_COLUMNS

# tolerance[kind]: "exact" for tabular_exact, "practice" for sampled training
TOLERANCE = {
    "pos_gap": {"exact": 1e-9, "practice": 0.05},        # mean |measured - predicted| PoS
    "kl_in_correct": {"exact": 1e-9, "practice": 0.01},  # nats
    "noise_ratio": {"exact": 1.5, "practice": 1.5},      # RMS error / RMS SE in C1's check (1 = noise only)
    "amplified_share": {"exact": 1.0, "practice": 0.95},
    "limit_gap": {"exact": 0.05, "practice": 0.05},     # N iterations approximate the limit
    "fit_rmse": {"exact": 1e-6, "practice": 0.05},
}

def kind(policy: str) -> str:
    return "practice" if policy in PRACTICE_POLICIES else "exact"


@dataclass
class Study:
    runs: pd.DataFrame                              # RUN_COLUMNS
    predictions: dict[tuple[str, str], pd.DataFrame]  # (policy, run) -> PREDICT_COLUMNS frame
    c1: dict[tuple[str, str], pd.DataFrame]         # (policy, run) -> C1_COLUMNS frame

    def select(self, policy: str, **where) -> pd.DataFrame:
        rows = self.runs[self.runs["policy"] == policy]
        for key, value in where.items():
            rows = rows[rows[key].isin(value if isinstance(value, (list, tuple)) else [value])]
        return rows

    def train_rows(self, policy: str, run: str) -> pd.DataFrame:
        df = self.predictions[(policy, run)]
        return df[df["split"] == "train"]


Verdict = tuple[str, str, float, float, str]


def _verdict(ok: bool) -> str:
    return "holds" if ok else "fails"


def _fmt(x: float) -> str:
    return f"{x:.3g}"


# --------------------------------------------------------------------------- summaries per run
def summarise_run(pred: pd.DataFrame, settings: dict) -> dict:
    """runs.csv's summary columns for one run (gaps, final PoS, held-out gain, E4's beta)."""
    train = pred[pred["split"] == "train"]
    later = train[train["iteration"] >= 1]
    last = train["iteration"].max()
    heldout = pred[pred["split"] != "train"]
    gain = np.nan
    if len(heldout):
        by_n = heldout.groupby("iteration")["pos"].mean()
        gain = float(by_n.loc[by_n.index.max()] - by_n.loc[0])
    wide = train.pivot(index="iteration", columns="question", values="pos").sort_index()
    beta_eff, rmse = theory.fit_effective_beta(
        wide.iloc[0].to_numpy(), wide.to_numpy(), kl=settings["kl"], norm=settings["norm"], eps=settings["eps"],
        beta_prev=settings["beta_prev"], std=settings["std"])
    gap = lambda col: float((later["pos"] - later[col]).abs().mean())  # noqa: E731
    return {
        "final_pos_mean": float(train.loc[train["iteration"] == last, "pos"].mean()),
        "pred_final_mean": float(train.loc[train["iteration"] == last, "pred_trajectory"].mean()),
        "gap_trajectory": gap("pred_trajectory"), "gap_one_step": gap("pred_one_step"),
        "gap_trajectory_G": gap("pred_trajectory_G"), "gap_one_step_G": gap("pred_one_step_G"),
        "heldout_gain": gain, "beta_eff": beta_eff, "beta_eff_rmse": rmse,
    }


# --------------------------------------------------------------------------- C1 / E1 data
def _c1_table(study: Study, policy: str) -> pd.DataFrame:
    """Sampled surrogate beside C1's closed form with E1 (finite G) and population weights."""
    frames = []
    for _, r in study.select(policy, sweep="variant").iterrows():
        key = (policy, r["run"])
        if key not in study.c1:
            continue
        pos = study.train_rows(*key).pivot(index="iteration", columns="question", values="pos")
        c1 = study.c1[key]
        p_n = pos.stack().rename("p_n").reset_index()
        p_prev = pos.shift(1).stack().rename("p_prev").reset_index()
        df = c1.merge(p_n, on=["iteration", "question"]).merge(p_prev, on=["iteration", "question"])
        kw = dict(norm=r["norm"], eps=float(r["eps"]))
        wg_plus, wg_minus = theory.finite_group_weights(df["p_prev"].to_numpy(), int(r["group_size"]),
                                                        std=r["std"], **kw)
        w_plus, w_minus = theory.advantage_weights(df["p_prev"].to_numpy(), **kw)
        df["theory_G"] = wg_plus * df["p_n"] - wg_minus * (1 - df["p_n"])
        with np.errstate(invalid="ignore"):
            df["theory_pop"] = w_plus * df["p_n"] - w_minus * (1 - df["p_n"])
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def noise_ratio(measured, closed_form, se) -> float:
    """RMS(measured - closed form) / RMS(standard error): about 1 when sampling noise is the only error.

    Robust where per-check z-scores are not: importance ratios pi_n/pi_{n-1} are heavy-tailed, so a
    single check's SE from a few groups can be far off, while mean(se^2) still estimates the mean
    variance without bias.
    """
    diff = np.asarray(measured - closed_form, float)
    se = np.asarray(se, float)
    ok = np.isfinite(diff) & np.isfinite(se)
    rms_se = np.sqrt(np.mean(se[ok] ** 2))
    rms_err = np.sqrt(np.mean(diff[ok] ** 2))
    return float(rms_err / rms_se) if rms_se > 0 else (0.0 if rms_err < 1e-9 else np.inf)


def claim_c1(study: Study, policy: str) -> Verdict | None:
    df = _c1_table(study, policy)
    if df.empty:
        return None
    ratio = noise_ratio(df["surrogate"], df["theory_G"], df["surrogate_se"])
    tol = TOLERANCE["noise_ratio"][kind(policy)]
    return (_verdict(ratio <= tol), "RMS(sampled surrogate - closed form) / RMS(its standard error)",
            ratio, tol, f"{len(df)} (question, iteration) checks, mean |diff| "
            f"{_fmt((df['surrogate'] - df['theory_G']).abs().mean())}, RMS SE {_fmt(np.sqrt((df['surrogate_se'] ** 2).mean()))}; "
            "closed form w+_G(p_n-1) p_n - w-_G(p_n-1) (1 - p_n) with the trainer's G")


def claim_e1(study: Study, policy: str) -> Verdict | None:
    df = _c1_table(study, policy)
    if df.empty:
        return None
    ratio_g = noise_ratio(df["surrogate"], df["theory_G"], df["surrogate_se"])
    ratio_pop = noise_ratio(df["surrogate"], df["theory_pop"], df["surrogate_se"])
    ok = ratio_g < ratio_pop and ratio_g <= TOLERANCE["noise_ratio"][kind(policy)]
    runs = study.select(policy, sweep=["variant", "group_size"])
    traj = ""
    if kind(policy) == "practice" and len(runs):
        traj = (f"; trajectory gap with finite-G C3 {_fmt(runs['gap_trajectory_G'].mean())} vs population "
                f"{_fmt(runs['gap_trajectory'].mean())}")
    return (_verdict(ok), "RMS error / RMS SE of C1's surrogate with E1's finite-G weights",
            ratio_g, TOLERANCE["noise_ratio"][kind(policy)],
            f"E1 weights {_fmt(ratio_g)} vs population weights {_fmt(ratio_pop)}: "
            f"E1 must also explain the sampled objective better than the population limit{traj}")


# --------------------------------------------------------------------------- C2..C7, E2..E4
def claim_c2(study: Study, policy: str) -> Verdict | None:
    runs = study.select(policy, sweep="variant")
    if runs.empty:
        return None
    medians = {}
    for run in runs["run"]:
        train = study.train_rows(policy, run)
        medians[run] = float(train.loc[train["iteration"] == train["iteration"].max(), "kl_in_correct"].median())
    worst = max(medians, key=medians.get)
    tol = TOLERANCE["kl_in_correct"][kind(policy)]
    return (_verdict(medians[worst] <= tol), "largest median KL(pi_N | correct || pi_ref | correct), nats",
            medians[worst], tol, ", ".join(f"{k}: {_fmt(v)}" for k, v in medians.items()))


def claim_c3(study: Study, policy: str) -> Verdict | None:
    runs = study.select(policy, sweep="variant")
    if runs.empty:
        return None
    worst = runs.loc[runs["gap_trajectory"].idxmax()]
    tol = TOLERANCE["pos_gap"][kind(policy)]
    return (_verdict(worst["gap_trajectory"] <= tol), "largest mean |p_n - C3 trajectory| over variants (train, n >= 1)",
            float(worst["gap_trajectory"]), tol,
            f"worst {worst['run']}; one-step gap {_fmt(worst['gap_one_step'])}; per variant: "
            + ", ".join(f"{r.run}: {_fmt(r.gap_trajectory)}" for r in runs.itertuples()))


def claim_c4(study: Study, policy: str) -> Verdict | None:
    runs = study.select(policy, sweep=["variant", "beta"], kl="ref", norm="mean_std")
    if runs.empty:
        return None
    amplified, limit_gap = [], []
    for run in runs["run"]:
        train = study.train_rows(policy, run)
        last = train[train["iteration"] == train["iteration"].max()]
        amplified.append((last["pos"] > last["p_ref"]).to_numpy())
        finite = np.isfinite(last["pred_limit"])
        limit_gap.append(float((last["pos"] - last["pred_limit"])[finite].abs().mean()))
    share = float(np.concatenate(amplified).mean())
    worst_limit = float(np.nanmax(limit_gap))
    tol, tol_limit = TOLERANCE["amplified_share"][kind(policy)], TOLERANCE["limit_gap"][kind(policy)]
    return (_verdict(share >= tol and worst_limit <= tol_limit), "share of questions with p_N > p_ref (kl=ref runs)",
            share, tol, f"largest mean |p_N - predicted limit| {_fmt(worst_limit)} (tolerance {tol_limit:g}) "
            f"over {len(runs)} runs")


def _spread_after_first(train: pd.DataFrame) -> float:
    wide = train.pivot(index="iteration", columns="question", values="pos").sort_index()
    later = wide.loc[wide.index >= 1]
    return float((later - later.iloc[0]).abs().max().mean())


def claim_c5(study: Study, policy: str) -> Verdict | None:
    only = study.select(policy, sweep="variant", kl="ref", norm="mean_only")
    std_ = study.select(policy, sweep="variant", kl="ref", norm="mean_std", eps=0.0)
    if only.empty or std_.empty:
        return None
    s_only = _spread_after_first(study.train_rows(policy, only["run"].iloc[0]))
    s_std = _spread_after_first(study.train_rows(policy, std_["run"].iloc[0]))
    tol = TOLERANCE["pos_gap"][kind(policy)]
    return (_verdict(s_only <= tol and s_std > s_only), "mean_only: mean over questions of max_n |p_n - p_1| (n >= 1)",
            s_only, tol, f"mean_std adapts: its spread {_fmt(s_std)} (must exceed mean_only's)")


def claim_c6(study: Study, policy: str) -> Verdict | None:
    mirror = study.select(policy, sweep="variant", kl="mirror", norm="mean_std")
    ref = study.select(policy, sweep="variant", kl="ref", norm="mean_std", eps=0.0)
    both = study.select(policy, sweep="variant", kl="both", norm="mean_std")
    if mirror.empty or ref.empty:
        return None
    traj = study.train_rows(policy, mirror["run"].iloc[0]).groupby("iteration")["pos"].mean()
    monotone = bool((traj.diff().dropna() >= -0.01).all())
    final_mirror, final_ref = float(traj.iloc[-1]), float(ref["final_pos_mean"].iloc[0])
    ok = monotone and final_mirror >= final_ref - 0.01
    evidence = f"mirror mean PoS non-decreasing: {monotone}; final mirror {_fmt(final_mirror)} vs ref {_fmt(final_ref)}"
    if not both.empty:
        gap = float(both["gap_trajectory"].iloc[0])
        ok = ok and gap <= TOLERANCE["pos_gap"][kind(policy)]
        evidence += f"; both: final {_fmt(float(both['final_pos_mean'].iloc[0]))}, C3 gap {_fmt(gap)}"
    return (_verdict(ok), "final mean PoS under kl=mirror", final_mirror, final_ref, evidence)


def _sweep_with_base(study: Study, policy: str, sweep: str, min_points: int) -> pd.DataFrame | None:
    """The sweep's runs plus its base run (mean_std, kl=ref, eps=0), sorted by the swept value."""
    base = study.select(policy, sweep="variant", kl="ref", norm="mean_std", eps=0.0)
    if base.empty:
        return None
    runs = pd.concat([base.iloc[:1], study.select(policy, sweep=sweep, variant=base["variant"].iloc[0])])
    return runs.sort_values(sweep) if runs[sweep].nunique() >= min_points else None


def claim_c7(study: Study, policy: str) -> Verdict | None:
    runs = _sweep_with_base(study, policy, "beta", min_points=3)
    if runs is None:
        return None
    finals = runs["final_pos_mean"].to_numpy()
    non_increasing = bool(np.all(np.diff(finals) <= 0.01))
    rho = float(stats.spearmanr(runs["beta"], finals).statistic)
    return (_verdict(non_increasing and rho < 0), "Spearman rho(beta, final mean PoS)", rho, 0.0,
            "final mean PoS by beta: " + ", ".join(f"{b:g}: {_fmt(f)}" for b, f in zip(runs["beta"], finals)))


def _sweep_rho(study: Study, policy: str, sweep: str) -> tuple[float, str] | None:
    runs = _sweep_with_base(study, policy, sweep, min_points=2)
    if runs is None:
        return None
    rho = float(stats.spearmanr(runs[sweep], runs["gap_trajectory"]).statistic)
    return rho, ", ".join(f"{int(k)}: {_fmt(g)}" for k, g in zip(runs[sweep], runs["gap_trajectory"]))


def claim_e2(study: Study, policy: str) -> Verdict | None:
    if kind(policy) != "practice":
        return None
    g, m = _sweep_rho(study, policy, "group_size"), _sweep_rho(study, policy, "inner_steps")
    if g is None and m is None:
        return None
    rhos = [r for r in (g, m) if r is not None]
    evidence = "; ".join(f"{name} -> gap: {r[1]}" for name, r in (("G", g), ("M", m)) if r is not None)
    other = study.select(policy, sweep=["kl_estimator", "clip_eps"])
    if len(other):
        evidence += "; " + ", ".join(f"{r.run}: {_fmt(r.gap_trajectory)}" for r in other.itertuples())
    worst = max(r[0] for r in rhos)
    return (_verdict(worst < 0), "largest Spearman rho(G or M, C3 gap): the gap shrinks as G and M grow",
            worst, 0.0, evidence)


def claim_e3(study: Study, policy: str) -> Verdict | None:
    if policy != "transformer":
        return None  # tabular questions share no parameters: held-out PoS cannot move by construction
    base = study.select(policy, sweep="variant")
    if base.empty:
        return None
    run = base["run"].iloc[0]
    pred = study.predictions[(policy, run)]
    held = pred[pred["split"] != "train"].pivot(index="iteration", columns="question", values="pos")
    if held.empty:
        return None
    gain = held.iloc[-1] - held.iloc[0]
    t = float(gain.mean() / (gain.std(ddof=1) / np.sqrt(len(gain)))) if len(gain) > 1 and gain.std() > 0 else 0.0
    verdict = "holds" if t >= 2 else "fails" if t <= -2 else "inconclusive"
    return (verdict, "paired t of held-out PoS gain (iteration N - 0)", t, 2.0,
            f"{run}: mean held-out gain {_fmt(float(gain.mean()))} over {len(gain)} questions")


def claim_e4(study: Study, policy: str) -> Verdict | None:
    runs = study.select(policy, sweep=["variant", "beta"], kl="ref")
    if runs.empty:
        return None
    worst = runs.loc[runs["beta_eff_rmse"].idxmax()]
    tol = TOLERANCE["fit_rmse"][kind(policy)]
    return (_verdict(worst["beta_eff_rmse"] <= tol), "largest RMSE of the C3 fit with an effective beta",
            float(worst["beta_eff_rmse"]), tol,
            "beta_eff/beta: " + ", ".join(f"{r.run}: {_fmt(r.beta_eff / r.beta)}" for r in runs.itertuples()))


CLAIMS: dict[str, Callable[[Study, str], Verdict | None]] = {
    "C1": claim_c1, "C2": claim_c2, "C3": claim_c3, "C4": claim_c4, "C5": claim_c5, "C6": claim_c6,
    "C7": claim_c7, "E1": claim_e1, "E2": claim_e2, "E3": claim_e3, "E4": claim_e4,
}


def claims_table(study: Study) -> pd.DataFrame:
    rows = []
    for claim, func in CLAIMS.items():
        for policy in study.runs["policy"].unique():
            result = func(study, policy)
            if result is None:
                continue
            verdict, metric, value, tol, evidence = result
            rows.append({"claim": claim, "policy": policy, "verdict": verdict, "metric": metric,
                         "value": value, "tolerance": tol, "evidence": evidence})
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def claims_markdown(table: pd.DataFrame, scale: str) -> str:
    """claims.md: a verdict matrix (claim x policy) and the full table with the numbers behind it."""
    matrix = table.pivot(index="claim", columns="policy", values="verdict").fillna("-")
    lines = [f"# Claims at scale `{scale}`", "", "Verdicts from the measured files (THEORY.md ids).", ""]
    lines += ["| claim | " + " | ".join(matrix.columns) + " |", "|---" * (len(matrix.columns) + 1) + "|"]
    lines += [f"| {c} | " + " | ".join(matrix.loc[c]) + " |" for c in matrix.index]
    lines += ["", "| claim | policy | verdict | metric | value | tolerance | evidence |", "|---" * 7 + "|"]
    for r in table.itertuples():
        lines.append(f"| {r.claim} | {r.policy} | **{r.verdict}** | {r.metric} | {r.value:.4g} | {r.tolerance:.3g} | "
                     f"{str(r.evidence).replace('|', '/')} |")
    return "\n".join(lines) + "\n"
