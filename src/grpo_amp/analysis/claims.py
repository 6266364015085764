"""Verdicts per claim (THEORY.md's C1..C7, E1..E5) from the measured files, never by hand.

    study = Study(runs, predictions, c1)   # runs.csv rows, predict frames and C1 frames per (policy, run)
    table = claims_table(study)            # CLAIM_COLUMNS, one row per claim and policy

Each claim is one small function (``CLAIMS``) returning a ``Verdict`` or None where the scale made
no run that tests it. Every threshold is in ``TOLERANCE``, by the policy's tolerance kind
(``grpo_amp.registry``): round-off for the closed-form self-check, the optimiser's tolerance for
E5's numerical maximisers (R1, R2), a stated allowance for practice.

The interval rule (one place, ``grpo_amp.analysis.stats.interval_verdict``): a claim's value carries its 95% interval over
seeds; the claim **holds** where the whole interval lies inside the tolerance, **fails** where it
lies wholly outside, and is **inconclusive** where it straddles the tolerance. A deterministic
policy's interval is its value. A claim that fails in practice is reported as failing, with its numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from grpo_amp import registry, theory
from grpo_amp.analysis.stats import (FAILS, HOLDS, INCONCLUSIVE, combine, difference_interval, interval_verdict,
                                     noise_ratio, seed_interval)
from grpo_amp.analysis.summaries import mean_gap
from grpo_amp.schema import CLAIM_COLUMNS

# TOLERANCE[name][tolerance kind of the policy]; one number for every kind where it does not depend on it
TOLERANCE = {
    "pos_gap": {registry.ROUNDOFF: 1e-9, registry.OPTIMISER: 1e-6, registry.PRACTICE: 0.05},  # mean |p - C3|
    "kl_in_correct": {registry.ROUNDOFF: 1e-9, registry.OPTIMISER: 1e-6, registry.PRACTICE: 0.01},  # nats
    "noise_ratio": 1.5,        # RMS error / RMS SE in C1's check (about 1 when sampling noise is the only error)
    "amplified_share": {registry.ROUNDOFF: 1.0, registry.OPTIMISER: 1.0, registry.PRACTICE: 0.95},
    "limit_gap": 0.05,         # N iterations approximate C4's limit
    "fit_rmse": {registry.ROUNDOFF: 1e-6, registry.OPTIMISER: 1e-5, registry.PRACTICE: 0.05},
    "monotone_slack": 0.01,    # C6/C7: a mean PoS may dip this much and still count as non-decreasing
    "spearman": 0.0,           # C7: rho(beta, final PoS) must lie below this
    "heldout_t": 2.0,          # E3: |paired t| beyond this decides
    "gap_step": 0.0,           # E2/E5: a step of the gap must lie below this (it shrinks)
    "visible_gap": 0.01,       # E5 R5: the one-group maximiser's gap must lie above this
    "degenerate_p": 1e-6,      # C1/E1: checks with p_{n-1} this close to 0 or 1 are 0 = 0 and left out
}


def tolerance(name: str, policy: str) -> float:
    value = TOLERANCE[name]
    return value[registry.policy(policy).tolerance] if isinstance(value, dict) else value


@dataclass(frozen=True)
class Verdict:
    """One row of the claims table: the verdict and the measured value it rests on."""
    verdict: str     # holds | fails | inconclusive
    metric: str      # what ``value`` measures
    value: float     # the measured value (mean over seeds)
    lo: float        # its 95% interval over seeds (lo = hi = value with one seed)
    hi: float
    n_seeds: int
    tolerance: float  # the threshold the verdict compares with (``TOLERANCE``)
    evidence: str     # the numbers behind it, in words


def _verdict(verdict: str, metric: str, values, threshold: float, evidence: str) -> Verdict:
    """A Verdict for per-seed ``values`` (one number for a deterministic policy)."""
    values = np.atleast_1d(np.asarray(values, dtype=float))
    mean, lo, hi = seed_interval(values)
    return Verdict(verdict, metric, mean, lo, hi, int(np.isfinite(values).sum()), threshold, evidence)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _fmt_interval(mean: float, lo: float, hi: float) -> str:
    """``m [lo, hi]``, or ``m`` alone where there is no interval (one seed, or none computed)."""
    no_interval = lo == hi or (np.isnan(lo) and np.isnan(hi))
    return _fmt(mean) if no_interval else f"{_fmt(mean)} [{_fmt(lo)}, {_fmt(hi)}]"


@dataclass
class Study:
    runs: pd.DataFrame                              # RUN_COLUMNS
    predictions: dict[tuple[str, str], pd.DataFrame]  # (policy, run) -> PREDICT_COLUMNS frame
    c1: dict[tuple[str, str], pd.DataFrame]         # (policy, run) -> C1_COLUMNS frame
    # (policy, run) -> E3_CONTROL_COLUMNS frame (train dir's e3_controls.csv: the tempered pi_ref per seed)
    e3: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)

    def select(self, policy: str, **where) -> pd.DataFrame:
        rows = self.runs[self.runs["policy"] == policy]
        for key, value in where.items():
            rows = rows[rows[key].isin(value if isinstance(value, (list, tuple)) else [value])]
        return rows

    def train_rows(self, policy: str, run: str) -> pd.DataFrame:
        df = self.predictions[(policy, run)]
        return df[df["split"] == "train"]

    def per_seed(self, policy: str, run: str, func: Callable[[pd.DataFrame], float]) -> np.ndarray:
        """``func`` of each seed's train rows of one run (ordered by seed)."""
        rows = self.train_rows(policy, run)
        return np.array([func(g) for _, g in rows.groupby("seed", sort=True)], dtype=float)

    def gaps(self, policy: str, run: str, column: str = "pred_trajectory") -> np.ndarray:
        return self.per_seed(policy, run, lambda g: mean_gap(g, column))

    def base(self, policy: str) -> pd.DataFrame:
        """The base run of every sweep: mean_std, kl=ref, eps=0, no swept knob."""
        return self.select(policy, sweep="variant", kl="ref", norm="mean_std", eps=0.0)


# --------------------------------------------------------------------------- C1 / E1 data
def _c1_table(study: Study, policy: str) -> pd.DataFrame:
    """Sampled surrogate beside C1's closed form with E1 (finite G) and population weights.

    Checks with p_{n-1} at 0 or 1 (every group has zero spread: both sides are 0) are left out.
    """
    frames = []
    for _, r in study.select(policy, sweep="variant").iterrows():
        key = (policy, r["run"])
        if key not in study.c1:
            continue
        pos = study.train_rows(*key).set_index(["seed", "question", "iteration"])["pos"].sort_index()
        p_prev = pos.groupby(level=["seed", "question"]).shift(1).rename("p_prev")
        df = (study.c1[key].join(pos.rename("p_n"), on=["seed", "question", "iteration"])
              .join(p_prev, on=["seed", "question", "iteration"]))
        edge = TOLERANCE["degenerate_p"]
        df = df[(df["p_prev"] > edge) & (df["p_prev"] < 1 - edge)].copy()
        kw = dict(norm=r["norm"], eps=float(r["eps"]))
        wg_plus, wg_minus = theory.finite_group_weights(df["p_prev"].to_numpy(), int(r["group_size"]),
                                                        std=r["std"], **kw)
        w_plus, w_minus = theory.advantage_weights(df["p_prev"].to_numpy(), **kw)
        df["theory_G"] = wg_plus * df["p_n"] - wg_minus * (1 - df["p_n"])
        with np.errstate(invalid="ignore"):
            df["theory_pop"] = w_plus * df["p_n"] - w_minus * (1 - df["p_n"])
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _pooled_ratio(df: pd.DataFrame, column: str) -> float:
    """C1's noise ratio over every check of every seed: one statistic whose uncertainty is already
    in the checks' standard errors (no seed interval on top: it would only add the t quantile of few seeds)."""
    return noise_ratio(df["surrogate"], df[column], df["surrogate_se"])


def claim_c1(study: Study, policy: str) -> Verdict | None:
    df = _c1_table(study, policy)
    if df.empty:
        return None
    ratio = _pooled_ratio(df, "theory_G")
    tol = TOLERANCE["noise_ratio"]
    return Verdict(interval_verdict(ratio, ratio, tol), "RMS(sampled surrogate - closed form) / RMS(its standard "
                   "error), pooled over seeds", ratio, ratio, ratio, int(df["seed"].nunique()), tol, f"an identity in expectation for every pi_n: this checks the measurement (ratios, "
                   f"advantages, PoS), not GRPO; {len(df)} (question, iteration, seed) checks with 0 < p_n-1 < 1, "
                   f"mean |diff| {_fmt((df['surrogate'] - df['theory_G']).abs().mean())}, RMS SE "
                   f"{_fmt(np.sqrt((df['surrogate_se'] ** 2).mean()))}; closed form w+_G(p_n-1) p_n - "
                   "w-_G(p_n-1) (1 - p_n) with the trainer's G")


def claim_e1(study: Study, policy: str) -> Verdict | None:
    """E1's weights must explain the sampled objective AND the population weights must be rejected.

    Where the population weights fit too, the check has no power to tell the two apart (noisy C1
    checks, e.g. many inner steps): inconclusive, not a failure of E1; E1 fails where its own weights
    are rejected."""
    if not registry.policy(policy).sampled:
        return None  # only sampled groups have finite-G weights to tell apart
    df = _c1_table(study, policy)
    if df.empty:
        return None
    ratio_g, ratio_pop = _pooled_ratio(df, "theory_G"), _pooled_ratio(df, "theory_pop")
    tol = TOLERANCE["noise_ratio"]
    accepted = interval_verdict(ratio_g, ratio_g, tol)
    rejected = interval_verdict(ratio_pop, ratio_pop, tol, holds_below=False)
    power = INCONCLUSIVE if rejected == FAILS else rejected
    runs = study.select(policy, sweep=["variant", "group_size"])
    return Verdict(combine(accepted, power), "RMS error / RMS SE of C1's surrogate with E1's finite-G weights, "
                   "pooled over seeds", ratio_g, ratio_g, ratio_g, int(df["seed"].nunique()), tol,
                    f"E1 weights {_fmt(ratio_g)} (must be <= {tol:g}) vs "
                    f"population weights {_fmt(ratio_pop)} (must be > {tol:g}: the check must tell them apart); "
                    f"trajectory gap with finite-G C3 {_fmt(runs['gap_trajectory_G'].mean())} vs population "
                    f"{_fmt(runs['gap_trajectory'].mean())}")


# --------------------------------------------------------------------------- C2..C7
def claim_c2(study: Study, policy: str) -> Verdict | None:
    runs = study.select(policy, sweep="variant")
    if runs.empty or registry.policy(policy).rung not in (None, "R1", "R6"):
        return None  # C2 is the population maximiser: R1 checks it numerically, the rest of E5 by C3_G

    def median_kl(g):
        return float(g.loc[g["iteration"] == g["iteration"].max(), "kl_in_correct"].median())
    per_run = {run: study.per_seed(policy, run, median_kl) for run in runs["run"]}
    worst = max(per_run, key=lambda k: per_run[k].mean())
    tol = tolerance("kl_in_correct", policy)
    _, lo, hi = seed_interval(per_run[worst])
    return _verdict(interval_verdict(lo, hi, tol), "largest median KL(pi_N | correct || pi_ref | correct), nats",
                    per_run[worst], tol, f"worst {worst}; " + ", ".join(f"{k}: {_fmt(v.mean())}" for k, v in per_run.items()))


def _prediction_column(policy: str) -> str:
    """R2 (the table's, and the transformer's transformer_r2) maximises the finite-G objective: its C3 is the one
    with E1's S_G."""
    return "pred_trajectory_G" if registry.policy(policy).rung == "R2" or policy == "transformer_r2" \
        else "pred_trajectory"


def claim_c3(study: Study, policy: str) -> Verdict | None:
    runs = study.select(policy, sweep="variant")
    if runs.empty:
        return None
    column = _prediction_column(policy)
    per_run = {run: study.gaps(policy, run, column) for run in runs["run"]}
    worst = max(per_run, key=lambda k: per_run[k].mean())
    one_step = study.gaps(policy, worst, column.replace("trajectory", "one_step"))
    tol = tolerance("pos_gap", policy)
    _, lo, hi = seed_interval(per_run[worst])
    label = "C3 with finite-G S_G" if column.endswith("_G") else "C3"
    return _verdict(interval_verdict(lo, hi, tol),
                    f"largest mean |p_n - {label} trajectory| over variants (train, n >= 1)", per_run[worst], tol,
                    f"worst {worst}; one-step gap {_fmt(one_step.mean())}; per variant: "
                    + ", ".join(f"{k}: {_fmt_interval(*seed_interval(v))}" for k, v in per_run.items()))


def claim_c4(study: Study, policy: str) -> Verdict | None:
    runs = study.select(policy, sweep=["variant", "beta"], kl="ref", norm="mean_std")
    if runs.empty:
        return None
    amplified, limit_gaps = [], []
    for run in runs["run"]:
        train = study.train_rows(policy, run)
        last = train[train["iteration"] == train["iteration"].max()]
        amplified.append(last.groupby("seed").apply(lambda g: (g["pos"] > g["p_ref"]).mean(), include_groups=False))
        finite = last[np.isfinite(last["pred_limit"])]
        limit_gaps.append(finite.groupby("seed").apply(lambda g: (g["pos"] - g["pred_limit"]).abs().mean(),
                                                       include_groups=False))
    share = pd.concat(amplified, axis=1).mean(axis=1).to_numpy()      # per seed, over runs
    limit = pd.concat(limit_gaps, axis=1).max(axis=1).to_numpy()      # per seed, the worst run
    tol, tol_limit = tolerance("amplified_share", policy), TOLERANCE["limit_gap"]
    verdict = combine(interval_verdict(*seed_interval(share)[1:], tol, holds_below=False),
                      interval_verdict(*seed_interval(limit)[1:], tol_limit))
    return _verdict(verdict, "share of questions with p_N > p_ref (kl=ref runs)", share, tol,
                    f"largest mean |p_N - predicted limit| {_fmt_interval(*seed_interval(limit))} "
                    f"(tolerance {tol_limit:g}) over {len(runs)} runs")


def _spread_after_first(train: pd.DataFrame) -> float:
    wide = train.pivot(index="iteration", columns="question", values="pos").sort_index()
    later = wide.loc[wide.index >= 1]
    return float((later - later.iloc[0]).abs().max().mean())


def claim_c5(study: Study, policy: str) -> Verdict | None:
    only = study.select(policy, sweep="variant", kl="ref", norm="mean_only")
    std_ = study.base(policy)
    if only.empty or std_.empty:
        return None
    s_only = study.per_seed(policy, only["run"].iloc[0], _spread_after_first)
    s_std = study.per_seed(policy, std_["run"].iloc[0], _spread_after_first)
    tol = tolerance("pos_gap", policy)
    adapts = interval_verdict(*difference_interval(s_only, s_std)[1:], 0.0, holds_below=False)
    return _verdict(combine(interval_verdict(*seed_interval(s_only)[1:], tol), adapts),
                    "mean_only: mean over questions of max_n |p_n - p_1| (n >= 1)", s_only, tol,
                    f"mean_std adapts: its spread {_fmt_interval(*seed_interval(s_std))} must exceed mean_only's")


def claim_c6(study: Study, policy: str) -> Verdict | None:
    mirror = study.select(policy, sweep="variant", kl="mirror", norm="mean_std")
    ref = study.base(policy)
    both = study.select(policy, sweep="variant", kl="both", norm="mean_std")
    if mirror.empty or ref.empty:
        return None
    slack = TOLERANCE["monotone_slack"]
    m_run, r_run = mirror["run"].iloc[0], ref["run"].iloc[0]
    traj = study.train_rows(policy, m_run).groupby("iteration")["pos"].mean()
    monotone = bool((traj.diff().dropna() >= -slack).all())
    final = study.per_seed(policy, m_run, lambda g: g.loc[g["iteration"] == g["iteration"].max(), "pos"].mean())
    final_ref = study.per_seed(policy, r_run, lambda g: g.loc[g["iteration"] == g["iteration"].max(), "pos"].mean())
    above_ref = interval_verdict(*difference_interval(final_ref, final)[1:], -slack, holds_below=False)
    parts = [HOLDS if monotone else FAILS, above_ref]
    evidence = (f"mirror's mean PoS non-decreasing (slack {slack:g}): {monotone}; final mirror "
                f"{_fmt_interval(*seed_interval(final))} must be >= final ref {_fmt_interval(*seed_interval(final_ref))}")
    if not both.empty:
        gap = study.gaps(policy, both["run"].iloc[0], _prediction_column(policy))
        parts.append(interval_verdict(*seed_interval(gap)[1:], tolerance("pos_gap", policy)))
        evidence += f"; both: C3 gap {_fmt_interval(*seed_interval(gap))}"
    return _verdict(combine(*parts), "final mean PoS under kl=mirror", final, slack, evidence)


def _sweep_with_base(study: Study, policy: str, sweep: str, min_points: int) -> pd.DataFrame | None:
    """The sweep's runs plus its base run (mean_std, kl=ref, eps=0), sorted by the swept value."""
    base = study.base(policy)
    if base.empty:
        return None
    runs = pd.concat([base.iloc[:1], study.select(policy, sweep=sweep, variant=base["variant"].iloc[0])])
    return runs.sort_values(sweep) if runs[sweep].nunique() >= min_points else None


def claim_c7(study: Study, policy: str) -> Verdict | None:
    runs = _sweep_with_base(study, policy, "beta", min_points=3)
    if runs is None:
        return None
    finals = np.stack([study.per_seed(policy, r, lambda g: g.loc[g["iteration"] == g["iteration"].max(), "pos"].mean())
                       for r in runs["run"]])  # (betas, seeds)
    rhos = np.array([stats.spearmanr(runs["beta"], finals[:, s]).statistic for s in range(finals.shape[1])])
    means = finals.mean(axis=1)
    non_increasing = bool(np.all(np.diff(means) <= TOLERANCE["monotone_slack"]))
    verdict = combine(HOLDS if non_increasing else FAILS,
                      interval_verdict(*seed_interval(rhos)[1:], TOLERANCE["spearman"] - 1e-12))
    return _verdict(verdict, "Spearman rho(beta, final mean PoS), per seed", rhos, TOLERANCE["spearman"],
                    "final mean PoS by beta: " + ", ".join(f"{b:g}: {_fmt(f)}" for b, f in zip(runs["beta"], means)))


# --------------------------------------------------------------------------- E2..E5
def _gap_steps(study: Study, runs: pd.DataFrame, policy: str, sweep: str, column: str):
    """Each step of the gap along a sweep: (from, to, diff, lo, hi) with Welch intervals over seeds."""
    gaps = [study.gaps(policy, r, column) for r in runs["run"]]
    values = runs[sweep].tolist()
    steps = [(values[i], values[i + 1], *difference_interval(gaps[i], gaps[i + 1])) for i in range(len(gaps) - 1)]
    return gaps, steps


def _steps_text(steps) -> str:
    return ", ".join(f"{a:g}->{b:g}: {_fmt_interval(d, lo, hi)}" for a, b, d, lo, hi in steps)


def claim_e2(study: Study, policy: str) -> Verdict | None:
    """The gap falls with G: every step of the G sweep lies below 0 with its interval."""
    if not registry.policy(policy).sampled:
        return None
    runs = _sweep_with_base(study, policy, "group_size", min_points=2)
    if runs is None:
        return None
    gaps, steps = _gap_steps(study, runs, policy, "group_size", "pred_trajectory")
    verdict = combine(*(interval_verdict(lo, hi, TOLERANCE["gap_step"]) for *_, lo, hi in steps))
    evidence = f"gap by G: " + ", ".join(f"{g:g}: {_fmt_interval(*seed_interval(v))}"
                                         for g, v in zip(runs["group_size"], gaps)) + f"; steps {_steps_text(steps)}"
    m_runs = _sweep_with_base(study, policy, "inner_steps", min_points=2)
    if m_runs is not None:
        m_gaps = [study.gaps(policy, r) for r in m_runs["run"]]
        evidence += "; gap by M (see E5 for its U-shape): " + ", ".join(
            f"{int(m)}: {_fmt_interval(*seed_interval(v))}" for m, v in zip(m_runs["inner_steps"], m_gaps))
    other = study.select(policy, sweep=["kl_estimator", "clip_eps"])
    if len(other):
        evidence += "; " + ", ".join(f"{r.run}: {_fmt(r.gap_trajectory)}" for r in other.itertuples())
    largest = max(d for *_, d, _lo, _hi in steps)
    return _verdict(verdict, "largest step of the C3 gap as G grows (negative: it shrinks)", [largest],
                    TOLERANCE["gap_step"], evidence)


def claim_e3(study: Study, policy: str) -> Verdict | None:
    if registry.policy(policy).family in ("tabular", "twin"):
        return None  # tabular questions share no parameters: held-out PoS cannot move by construction
    base = study.select(policy, sweep="variant")
    if base.empty:
        return None
    run = base["run"].iloc[0]
    pred = study.predictions[(policy, run)]
    held = pred[pred["split"] != "train"]
    if held.empty:
        return None

    def paired_t(g):
        wide = g.pivot(index="iteration", columns="question", values="pos").sort_index()
        gain = wide.iloc[-1] - wide.iloc[0]
        return float(gain.mean() / (gain.std(ddof=1) / np.sqrt(len(gain)))) if len(gain) > 1 and gain.std() > 0 else 0.0
    ts = np.array([paired_t(g) for _, g in held.groupby("seed", sort=True)])
    gains = held.groupby("seed").apply(lambda g: g.loc[g["iteration"] == g["iteration"].max(), "pos"].mean()
                                       - g.loc[g["iteration"] == 0, "pos"].mean(), include_groups=False)
    t_tol = TOLERANCE["heldout_t"]
    _, lo, hi = seed_interval(ts)
    verdict = HOLDS if lo >= t_tol else FAILS if hi <= -t_tol else INCONCLUSIVE
    p_ref = held[held["iteration"] == 0].groupby("seed")["pos"].mean().to_numpy()
    evidence = (f"{run}: mean held-out gain {_fmt_interval(*seed_interval(gains))} over "
                f"{held['question'].nunique()} questions (held-out p_ref {_fmt(float(p_ref.mean()))})")
    # the controls (grpo.e3_controls): the gain minus each control's, with its interval over seeds. A gain no
    # larger than a control's is sharpening, not generalisation: "holds" then drops to inconclusive
    effects = []
    for control in [p for p, spec in registry.POLICIES.items() if spec.control_of == policy]:
        if (control, run) in study.predictions:
            c_held = study.predictions[(control, run)]
            c_held = c_held[c_held["split"] != "train"]
            c_gains = c_held.groupby("seed").apply(
                lambda g: g.loc[g["iteration"] == g["iteration"].max(), "pos"].mean()
                - g.loc[g["iteration"] == 0, "pos"].mean(), include_groups=False)
            effects.append((f"minus {control}'s gain", difference_interval(c_gains.to_numpy(), gains.to_numpy())))
    if (policy, run) in study.e3:
        e3 = study.e3[(policy, run)].set_index("seed").loc[gains.index]
        tempered = (e3["heldout_p_tempered"] - e3["heldout_p_ref"]).to_numpy()
        effects.append((f"minus the tempered pi_ref's gain (T = {_fmt(float(e3['temperature'].mean()))}, matched to "
                        "the train entropy drop)", seed_interval(gains.to_numpy() - tempered)))  # paired by seed
    for name, effect in effects:
        evidence += f"; effect {name}: {_fmt_interval(*effect)}"
        if verdict == HOLDS and not effect[1] > 0:
            verdict = INCONCLUSIVE
    return _verdict(verdict, "paired t of held-out PoS gain (iteration N - 0), per seed", ts, t_tol, evidence)


def claim_e4(study: Study, policy: str) -> Verdict | None:
    """The C3 fit with an effective beta: beta_eff/beta where a penalty is applied (kl=ref), and beta_eff
    itself per learning rate where none is (the lr sweep around kl=mirror: TRL's beta = 0, whose only
    pull towards pi_{n-1} is the step size)."""
    explicit = study.select(policy, sweep=["variant", "beta"], kl="ref")
    implicit = study.select(policy, sweep=["variant", "lr"], kl="mirror") if "lr" in registry.policy(policy).sweeps \
        else explicit.iloc[:0]
    runs = pd.concat([explicit, implicit])
    if runs.empty:
        return None
    worst = runs.loc[runs["beta_eff_rmse"].idxmax()]
    tol = tolerance("fit_rmse", policy)
    verdict = interval_verdict(worst["beta_eff_rmse_lo"], worst["beta_eff_rmse_hi"], tol)
    evidence = ["beta_eff/beta: " + ", ".join(f"{r.run}: {_fmt(r.beta_eff / r.beta)}" for r in explicit.itertuples())]
    if not implicit.empty:
        evidence.append("no explicit penalty (kl=mirror fit), beta_eff per lr: " + ", ".join(
            f"lr {r.lr:g}: {_fmt_interval(r.beta_eff, r.beta_eff_lo, r.beta_eff_hi)}"
            for r in implicit.sort_values("lr").itertuples()))
    return Verdict(verdict, "largest RMSE of the C3 fit with an effective beta", float(worst["beta_eff_rmse"]),
                   float(worst["beta_eff_rmse_lo"]), float(worst["beta_eff_rmse_hi"]), int(worst["n_seeds"]), tol,
                   "; ".join(evidence))


def claim_e5(study: Study, policy: str) -> Verdict | None:
    """Each E5 rung's own claim (THEORY.md): R1 = C3, R2 = C3 with S_G, R3 -> R2 as M grows,
    R4 -> R3 as m grows, R5's gap is visible (E[argmax] != argmax E), R6's gap is U-shaped in M."""
    rung = registry.policy(policy).rung
    base = study.base(policy)
    if rung is None or base.empty:
        return None
    base_run = base["run"].iloc[0]
    if rung in ("R1", "R2"):
        column = _prediction_column(policy)
        runs = study.select(policy, sweep="variant")
        worst = max((float(np.abs(study.train_rows(policy, r).query("iteration >= 1")["pos"]
                                  - study.train_rows(policy, r).query("iteration >= 1")[column]).max()), r)
                    for r in runs["run"])
        tol = tolerance("pos_gap", policy)
        return _verdict(interval_verdict(worst[0], worst[0], tol),
                        f"{rung}: largest |p_n - {'C3 with S_G' if rung == 'R2' else 'C3'}| over variants, questions, n",
                        [worst[0]], tol, f"worst {worst[1]}; a numerical maximiser with no closed form in its path")
    if rung in ("R3", "R4"):
        sweep = "inner_steps" if rung == "R3" else "groups_per_question"
        runs = _sweep_with_base(study, policy, sweep, min_points=2)
        if runs is None:
            return None
        gaps, steps = _gap_steps(study, runs, policy, sweep, "pred_trajectory_G")
        first_to_last = difference_interval(gaps[0], gaps[-1])
        symbol = "M" if rung == "R3" else "m"
        return _verdict(interval_verdict(first_to_last[1], first_to_last[2], TOLERANCE["gap_step"]),
                        f"{rung}: change of the C3_G gap from the smallest to the largest {symbol}", [first_to_last[0]],
                        TOLERANCE["gap_step"], f"gap_G by {symbol}: " + ", ".join(
                            f"{v:g}: {_fmt_interval(*seed_interval(g))}" for v, g in zip(runs[sweep], gaps))
                        + f"; steps {_steps_text(steps)}")
    if rung == "R5":
        gaps = study.gaps(policy, base_run, "pred_trajectory_G")
        tol = TOLERANCE["visible_gap"]
        return _verdict(interval_verdict(*seed_interval(gaps)[1:], tol, holds_below=False),
                        "R5: mean |p_n - C3_G| of one group's own maximiser", gaps, tol,
                        f"{base_run}: must lie above {tol:g} (E[argmax] != argmax E)")
    runs = _sweep_with_base(study, policy, "inner_steps", min_points=3)  # R6
    if runs is None:
        return None
    gaps = [study.gaps(policy, r, "pred_trajectory_G") for r in runs["run"]]
    means = np.array([g.mean() for g in gaps])
    best = int(np.argmin(means))
    if best in (0, len(gaps) - 1):
        verdict, evidence = FAILS, "the smallest gap sits at an end of the M sweep"
    else:
        left, right = difference_interval(gaps[0], gaps[best]), difference_interval(gaps[-1], gaps[best])
        verdict = combine(interval_verdict(left[1], left[2], 0.0), interval_verdict(right[1], right[2], 0.0))
        evidence = (f"interior minimum at M = {runs['inner_steps'].iloc[best]:g}: below M = "
                    f"{runs['inner_steps'].iloc[0]:g} by {_fmt_interval(*left)}, below M = "
                    f"{runs['inner_steps'].iloc[-1]:g} by {_fmt_interval(*right)}")
    return _verdict(verdict, "R6: C3_G gap is U-shaped in M (optimisation error vs one group's noise)",
                    gaps[best], 0.0, evidence + "; gap_G by M: " + ", ".join(
                        f"{m:g}: {_fmt_interval(*seed_interval(g))}" for m, g in zip(runs["inner_steps"], gaps)))


CLAIMS: dict[str, Callable[[Study, str], Verdict | None]] = {
    "C1": claim_c1, "C2": claim_c2, "C3": claim_c3, "C4": claim_c4, "C5": claim_c5, "C6": claim_c6,
    "C7": claim_c7, "E1": claim_e1, "E2": claim_e2, "E3": claim_e3, "E4": claim_e4, "E5": claim_e5,
}


def claims_table(study: Study) -> pd.DataFrame:
    rows = []
    for claim, func in CLAIMS.items():
        for policy in study.runs["policy"].unique():
            if registry.policy(policy).control_of is not None:
                continue  # a control run enters its policy's claim (E3), not a row of its own
            result = func(study, policy)
            if result is None:
                continue
            rows.append({"claim": claim, "policy": policy, "verdict": result.verdict, "metric": result.metric,
                         "value": result.value, "value_lo": result.lo, "value_hi": result.hi,
                         "n_seeds": result.n_seeds, "tolerance": result.tolerance, "evidence": result.evidence})
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def claims_markdown(table: pd.DataFrame, scale: str, notes: list[str] | tuple[str, ...] = ()) -> str:
    """claims.md: a verdict matrix (claim x policy) and the full table with the numbers behind it.

    ``notes`` (the runs' run.json notes, e.g. a sampling temperature != 1) come first, under "Read first".
    """
    matrix = table.pivot(index="claim", columns="policy", values="verdict").fillna("-")
    order = [p for p in registry.POLICY_NAMES if p in matrix.columns]
    matrix = matrix[order + [c for c in matrix.columns if c not in order]]
    lines = [f"# Claims at scale `{scale}`", "", "Verdicts from the measured files (THEORY.md ids). A value's "
             "interval is its 95% t-interval over seeds; a claim holds where the whole interval lies inside the "
             "tolerance, fails where it lies wholly outside, and is inconclusive where it straddles.", "",
             "Policies: " + "; ".join(f"`{p}`: {registry.policy(p).label}" for p in order
                                      if p in registry.POLICIES) + ".", ""]
    if notes:
        lines += ["## Read first", "", *[f"- {n}" for n in notes], ""]
    lines += ["| claim | " + " | ".join(matrix.columns) + " |", "|---" * (len(matrix.columns) + 1) + "|"]
    lines += [f"| {c} | " + " | ".join(matrix.loc[c]) + " |" for c in matrix.index]
    lines += ["", "| claim | policy | verdict | metric | value [95% interval] | seeds | tolerance | evidence |",
              "|---" * 8 + "|"]
    for r in table.itertuples():
        lines.append(f"| {r.claim} | {r.policy} | **{r.verdict}** | {r.metric} | "
                     f"{_fmt_interval(r.value, r.value_lo, r.value_hi)} | {r.n_seeds} | {r.tolerance:.3g} | "
                     f"{str(r.evidence).replace('|', '/')} |")
    return "\n".join(lines) + "\n"
