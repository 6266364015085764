"""The paper's claims C2 .. C7, one measure per row: ``(study, policy, theory) -> Measure | None``.

Each measure re-run with a wrong theory is how ``table`` counts the row's power; None where the scale
made no run that tests it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from grpo_amp import registry
from grpo_amp.analysis.claims.measure import Measure, fmt, fmt_interval, measure
from grpo_amp.analysis.claims.study import Study
from grpo_amp.analysis.claims.theories import Theory
from grpo_amp.analysis.stats import difference_interval, seed_interval


def c2(study: Study, policy: str, t: Theory) -> Measure | None:
    """The largest median within-correct KL over the plain variants and the signed-task run (``-sign1``, where the
    scale runs one: 4 correct spellings a value instead of 2); the evidence gives each run's correct-set sizes."""
    runs = study.select(policy, sweep=["variant", "plus_sign"])
    if runs.empty or registry.policy(policy).rung not in (None, "R1", "R6"):
        return None  # C2 is the population maximiser: R1 checks it numerically, the rest of E5 by C3_G

    def median_kl(g):
        return float(g.loc[g["iteration"] == g["iteration"].max(), "kl_in_correct"].median())
    per_run = {run: study.per_seed(policy, run, median_kl) for run in runs["run"]}
    worst = max(per_run, key=lambda k: per_run[k].mean())
    sets = {run: _correct_sets(study.train_rows(policy, run)) for run in per_run}
    shared = len(set(sets.values())) == 1  # one task for every run: say its sets once
    return measure(per_run[worst], f"worst {worst}; "
                    + ", ".join(f"{k}: {fmt(v.mean())}" + ("" if shared else f" ({sets[k]})") for k, v in per_run.items())
                    + (f"; correct {sets[worst]}" if shared else "")
                    + "; every named wrong theory tilts by r alone and predicts KL 0 as well")


def _correct_sets(rows: pd.DataFrame) -> str:
    """How many outputs C2's KL compares: the train questions' correct-set sizes (a set of one has KL 0 by force)."""
    sizes = rows.drop_duplicates("question")["n_correct"].dropna().astype(int)
    if sizes.empty:
        return "sets not listed"
    counts = sizes.value_counts().sort_index()
    return (f"sets of {'/'.join(map(str, counts.index))} outputs: {'/'.join(map(str, counts.to_numpy()))} "
            "train questions")


def _gap(measured: np.ndarray, predicted: np.ndarray) -> float:
    """mean |p_n - prediction| over questions and n >= 1."""
    return float(np.nanmean(np.abs(measured[1:] - predicted[1:])))


def run_gaps(study: Study, policy: str, run: str, t: Theory) -> np.ndarray:
    return np.array([_gap(m, p) for m, p in zip(study.measured(policy, run), study.trajectory(policy, run, t))])


def c3(study: Study, policy: str, t: Theory) -> Measure | None:
    runs = study.select(policy, sweep="variant")
    if runs.empty:
        return None
    per_run = {run: run_gaps(study, policy, run, t) for run in runs["run"]}
    worst = max(per_run, key=lambda k: per_run[k].mean())
    return measure(per_run[worst], f"worst {worst}; per variant: "
                    + ", ".join(f"{k}: {fmt_interval(*seed_interval(v))}" for k, v in per_run.items()))


# --------------------------------------------------------------------------- C4 .. C7: limits
def _ref_runs(study: Study, policy: str) -> pd.DataFrame:
    return study.select(policy, sweep=["variant", "beta"], kl="ref", norm="mean_std")


def c4a(study: Study, policy: str, t: Theory) -> Measure | None:
    """Share of questions whose p_N lies on the side of p_ref the theory predicts (every named theory
    predicts p_N > p_ref, amplification; the null predicts p_N = p_ref)."""
    runs = _ref_runs(study, policy)
    if runs.empty:
        return None
    shares = []
    for run in runs["run"]:
        shares.append([float(np.mean((m[-1] > m[0]) == (p[-1] > m[0])))
                       for m, p in zip(study.measured(policy, run), study.trajectory(policy, run, t))])
    share = np.mean(np.array(shares), axis=0)  # per seed, over runs
    return measure(share, f"over {len(runs)} kl=ref runs; p_N > p_ref predicted by {t.name}")


def _limit_gaps(study: Study, policy: str, runs: list[str], t: Theory) -> dict[str, np.ndarray]:
    """Per run, each seed's mean |p_N - the theory's limit from p_ref| (NaN limits, 2-cycles, left out)."""
    out = {}
    for run in runs:
        out[run] = np.array([float(np.nanmean(np.abs(m[-1] - lim))) if np.isfinite(lim).any() else np.nan
                             for m, lim in zip(study.measured(policy, run), study.limit(policy, run, t))])
    return out


def _worst_limit_gap(study: Study, policy: str, runs: list[str], t: Theory, what: str) -> Measure | None:
    if not runs:
        return None
    per_run = _limit_gaps(study, policy, runs, t)
    worst = np.max(np.vstack(list(per_run.values())), axis=0)  # per seed, the worst run
    return measure(worst, f"{what}, limits of {t.name}: " + ", ".join(
        f"{k}: {fmt_interval(*seed_interval(v))}" for k, v in per_run.items()))


def c4b(study: Study, policy: str, t: Theory) -> Measure | None:
    return _worst_limit_gap(study, policy, list(_ref_runs(study, policy)["run"]), t, "kl=ref runs")


def c6a(study: Study, policy: str, t: Theory) -> Measure | None:
    runs = study.select(policy, sweep="variant", kl="mirror", norm="mean_std")
    return _worst_limit_gap(study, policy, list(runs["run"]), t, "kl=mirror (predicted limit 1)")


def c6b(study: Study, policy: str, t: Theory) -> Measure | None:
    """kl=both: ref's fixed points, reached more slowly (beta_prev damps each step) and from p_ref to another
    limit: p_N against the prediction at N, not the limit, which N iterations of both need not reach."""
    runs = study.select(policy, sweep="variant", kl="both", norm="mean_std")
    if runs.empty:
        return None
    per_run = {run: np.array([float(np.mean(np.abs(m[-1] - p[-1])))
                              for m, p in zip(study.measured(policy, run), study.trajectory(policy, run, t))])
               for run in runs["run"]}
    worst = np.max(np.vstack(list(per_run.values())), axis=0)
    return measure(worst, "kl=both, p_N against the prediction at N: " + ", ".join(
        f"{k}: {fmt_interval(*seed_interval(v))}" for k, v in per_run.items()))


def _spread(m: np.ndarray) -> np.ndarray:
    """Per question, max_n |p_n - p_1| over n >= 1: 0 where the whole gain is in the first step."""
    return np.abs(m[1:] - m[1]).max(axis=0)


def c5a(study: Study, policy: str, t: Theory) -> Measure | None:
    """mean_only: mean over questions of |measured spread after step 1 - predicted spread| (0 under C3: S constant)."""
    only = study.select(policy, sweep="variant", kl="ref", norm="mean_only")
    if only.empty:
        return None
    run = only["run"].iloc[0]
    values = [float(np.mean(np.abs(_spread(m) - _spread(p))))
              for m, p in zip(study.measured(policy, run), study.trajectory(policy, run, t))]
    spread = [float(_spread(m).mean()) for m in study.measured(policy, run)]
    return measure(values, f"{run}: measured spread {fmt_interval(*seed_interval(spread))}")


def c5b(study: Study, policy: str, t: Theory) -> Measure | None:
    """mean_std adapts to p_{n-1}: its spread after step 1 minus mean_only's (Welch interval over seeds)."""
    only = study.select(policy, sweep="variant", kl="ref", norm="mean_only")
    std_ = study.base(policy)
    if only.empty or std_.empty:
        return None
    s_only = np.array([_spread(m).mean() for m in study.measured(policy, only["run"].iloc[0])])
    s_std = np.array([_spread(m).mean() for m in study.measured(policy, std_["run"].iloc[0])])
    diff = difference_interval(s_only, s_std)
    return measure([diff[0]], n_seeds=len(s_std), interval=diff,
                    evidence=f"spread mean_std {fmt_interval(*seed_interval(s_std))}, mean_only "
                    f"{fmt_interval(*seed_interval(s_only))}")


def _beta_runs(study: Study, policy: str) -> pd.DataFrame | None:
    base = study.base(policy)
    if base.empty:
        return None
    runs = pd.concat([base.iloc[:1], study.select(policy, sweep="beta", variant=base["variant"].iloc[0])])
    return runs.sort_values("beta") if runs["beta"].nunique() >= 3 else None


def c7a(study: Study, policy: str, t: Theory) -> Measure | None:
    """The sign: Spearman rho(beta, final mean PoS) per seed."""
    runs = _beta_runs(study, policy)
    if runs is None:
        return None
    finals = np.stack([[m[-1].mean() for m in study.measured(policy, r)] for r in runs["run"]])  # (betas, seeds)
    rhos = np.array([stats.spearmanr(runs["beta"], finals[:, s]).statistic for s in range(finals.shape[1])])
    return measure(rhos, "final mean PoS by beta: " + ", ".join(
        f"{b:g}: {fmt(f)}" for b, f in zip(runs["beta"], finals.mean(axis=1))))


def c7b(study: Study, policy: str, t: Theory) -> Measure | None:
    """The curve: per seed, the largest |final mean PoS - mean predicted limit| over the beta sweep."""
    runs = _beta_runs(study, policy)
    if runs is None:
        return None
    finals = np.stack([[m[-1].mean() for m in study.measured(policy, r)] for r in runs["run"]])
    limits = np.stack([[np.nanmean(lim) for lim in study.limit(policy, r, t)] for r in runs["run"]])
    return measure(np.abs(finals - limits).max(axis=0), "beta: final mean PoS / predicted limit: " + ", ".join(
        f"{b:g}: {fmt(f)} / {fmt(p)}" for b, f, p in zip(runs["beta"], finals.mean(axis=1), limits.mean(axis=1))))
