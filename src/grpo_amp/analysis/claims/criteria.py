"""One criterion per row: what each claim measures, how its value compares with its tolerance, and
which wrong theories it is re-run against (its power).

    m = c3(study, "tabular_sgd", C3_G)   # Measure: per-seed values and the numbers behind them
    CRITERIA                             # the table: id, measure, metric, criterion, tolerance, power

A measure is a function ``(study, policy, theory) -> Measure | None`` (None: the scale made no run
that tests it). Where the value depends on a prediction, the theory is the one the row is judged by,
and the same function re-run with a wrong theory is how ``table`` counts the power. A new claim is one
measure function here and one ``Criterion`` entry in ``CRITERIA``.

Power kinds (``Criterion.power``):
- ``named``: re-run against ``theories.wrong_theories`` (C1/E1: ``wrong_weights``); a wrong theory is
  rejected where its own verdict, by the same criterion and tolerance, is "fails".
- ``null``: an effect check (a sign or a change) against the no-effect null: rejected where the
  interval lies wholly on the claimed side of 0.
- ``theory-free``: the value does not depend on the prediction (C2): it rejects none of the named
  wrong theories, so it cannot hold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from grpo_amp import registry, theory
from grpo_amp.analysis.claims.study import Study
from grpo_amp.analysis.claims.theories import (C3, C3_G, NULL, Theory, own, weights, wrong_theories,
                                               wrong_weights)
from grpo_amp.analysis.stats import difference_interval, noise_ratio, seed_interval

# TOLERANCE[name][tolerance kind of the policy]; one number for every kind where it does not depend on it
TOLERANCE = {
    "pos_gap": {registry.ROUNDOFF: 1e-9, registry.OPTIMISER: 1e-6, registry.PRACTICE: 0.05},  # mean |p - C3|
    "kl_in_correct": {registry.ROUNDOFF: 1e-9, registry.OPTIMISER: 1e-6, registry.PRACTICE: 0.01},  # nats
    "noise_ratio": 1.5,        # RMS error / RMS SE in C1's check (about 1 when sampling noise is the only error)
    "amplified_share": {registry.ROUNDOFF: 1.0, registry.OPTIMISER: 1.0, registry.PRACTICE: 0.95},
    "limit_gap": 0.05,         # N iterations approximate C4's limit (C4b, C6, C7b)
    "fit_rmse": {registry.ROUNDOFF: 1e-6, registry.OPTIMISER: 1e-5, registry.PRACTICE: 0.05},
    "effect": 0.0,             # a sign or a change (C5b, C7a, E2b, E3, E5 R3..R6): its side of 0
    "visible_gap": 0.01,       # E5 R5: the one-group maximiser's gap must lie above this
    "degenerate_p": 1e-6,      # C1/E1: checks with p_{n-1} this close to 0 or 1 are 0 = 0 and left out
}
WEIGHT_ERROR_GRID = np.round(np.arange(0.01, 0.51, 0.01), 2)  # C1/E1: the weight errors it may detect


def tolerance(name: str, policy: str) -> float:
    value = TOLERANCE[name]
    return value[registry.policy(policy).tolerance] if isinstance(value, dict) else value


@dataclass(frozen=True)
class Measure:
    values: np.ndarray                                # per seed (one number: pooled, or deterministic)
    evidence: str = ""
    interval: tuple[float, float, float] | None = None  # (mean, lo, hi) where not the seeds' t-interval (Welch)
    n_seeds: int | None = None                          # where not len(values) (pooled checks, differences)

    def summary(self) -> tuple[float, float, float]:
        return self.interval if self.interval is not None else seed_interval(self.values)


def _measure(values, evidence: str = "", interval=None, n_seeds: int | None = None) -> Measure:
    return Measure(np.atleast_1d(np.asarray(values, dtype=float)), evidence, interval, n_seeds)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def fmt_interval(mean: float, lo: float, hi: float) -> str:
    """``m [lo, hi]``, or ``m`` alone where there is no interval (one seed, or none computed)."""
    no_interval = lo == hi or (np.isnan(lo) and np.isnan(hi))
    return _fmt(mean) if no_interval else f"{_fmt(mean)} [{_fmt(lo)}, {_fmt(hi)}]"


def _last(m: np.ndarray) -> np.ndarray:
    return m[-1]


# --------------------------------------------------------------------------- C1 / E1
def _c1_frames(study: Study, policy: str) -> list[tuple[pd.Series, pd.DataFrame]]:
    """Per variant run: its settings and its C1 checks beside p_{n-1} and p_n (0 < p_{n-1} < 1 only:
    at 0 or 1 every group has zero spread and both sides are 0)."""
    key = ("c1", policy)
    if key in study._cache:
        return study._cache[key]
    out = []
    for _, r in study.select(policy, sweep="variant").iterrows():
        if (policy, r["run"]) not in study.c1:
            continue
        pos = study.train_rows(policy, r["run"]).set_index(["seed", "question", "iteration"])["pos"].sort_index()
        p_prev = pos.groupby(level=["seed", "question"]).shift(1).rename("p_prev")
        df = (study.c1[(policy, r["run"])].join(pos.rename("p_n"), on=["seed", "question", "iteration"])
              .join(p_prev, on=["seed", "question", "iteration"]))
        edge = TOLERANCE["degenerate_p"]
        out.append((r, df[(df["p_prev"] > edge) & (df["p_prev"] < 1 - edge)]))
    study._cache[key] = out
    return out


def _c1_closed(study: Study, policy: str, t: Theory) -> pd.DataFrame:
    """Every C1 check's surrogate, SE and closed form w+ p_n - w- (1 - p_n) under theory ``t`` (unscaled)."""
    key = ("c1 closed", policy, replace(t, weight_factor=1.0))
    if key not in study._cache:
        parts = []
        for r, df in _c1_frames(study, policy):
            w_plus, w_minus = weights(key[2], df["p_prev"].to_numpy(), r, study.finite_group.get(policy))
            p_n = df["p_n"].to_numpy()
            with np.errstate(invalid="ignore"):
                closed = w_plus * p_n - w_minus * (1 - p_n)
            parts.append(pd.DataFrame({"surrogate": df["surrogate"].to_numpy(), "closed": closed,
                                       "se": df["surrogate_se"].to_numpy(), "seed": df["seed"].to_numpy()}))
        study._cache[key] = pd.concat(parts, ignore_index=True)
    return study._cache[key]


def _c1_ratio(study: Study, policy: str, t: Theory, scale: float = 1.0) -> tuple[float, pd.DataFrame]:
    both = _c1_closed(study, policy, t)
    return noise_ratio(both["surrogate"], t.weight_factor * scale * both["closed"], both["se"]), both


def smallest_detected_weight_error(study: Study, policy: str, t: Theory) -> float:
    """The smallest error d (on WEIGHT_ERROR_GRID) at which the check rejects both weights x(1+d) and
    x(1-d): RMS error / RMS SE above the tolerance on the same checks. NaN if none up to 50%."""
    tol = TOLERANCE["noise_ratio"]
    for d in WEIGHT_ERROR_GRID:
        if min(_c1_ratio(study, policy, t, 1 + d)[0], _c1_ratio(study, policy, t, 1 - d)[0]) > tol:
            return float(d)
    return np.nan


def c1(study: Study, policy: str, t: Theory) -> Measure | None:
    """C1's sampled surrogate against its closed form w+ p_n - w- (1 - p_n), pooled over seeds (the checks'
    own standard errors carry the uncertainty: no seed interval on top)."""
    if not _c1_frames(study, policy):
        return None
    ratio, both = _c1_ratio(study, policy, t)
    evidence = (f"{len(both)} (question, iteration, seed) checks with 0 < p_n-1 < 1, weights {t.name}, mean |diff| "
                f"{_fmt((both['surrogate'] - t.weight_factor * both['closed']).abs().mean())}, "
                f"RMS SE {_fmt(np.sqrt((both['se'] ** 2).mean()))}")
    if t == C3_G:  # the row's own weights (C1, E1a): how small an error it would catch
        d = smallest_detected_weight_error(study, policy, t)
        evidence += ("; smallest weight error it detects: none up to 50%" if np.isnan(d) else
                     f"; smallest weight error it detects: {d:.0%} (x{1 + d:g} and x{1 - d:g} both rejected)")
    return Measure(np.array([ratio]), evidence, n_seeds=int(both["seed"].nunique()))


# --------------------------------------------------------------------------- C2, C3
def c2(study: Study, policy: str, t: Theory) -> Measure | None:
    runs = study.select(policy, sweep="variant")
    if runs.empty or registry.policy(policy).rung not in (None, "R1", "R6"):
        return None  # C2 is the population maximiser: R1 checks it numerically, the rest of E5 by C3_G

    def median_kl(g):
        return float(g.loc[g["iteration"] == g["iteration"].max(), "kl_in_correct"].median())
    per_run = {run: study.per_seed(policy, run, median_kl) for run in runs["run"]}
    worst = max(per_run, key=lambda k: per_run[k].mean())
    return _measure(per_run[worst], f"worst {worst}; " + ", ".join(f"{k}: {_fmt(v.mean())}" for k, v in per_run.items())
                    + "; every named wrong theory tilts by r alone and predicts KL 0 as well")


def _gap(measured: np.ndarray, predicted: np.ndarray) -> float:
    """mean |p_n - prediction| over questions and n >= 1."""
    return float(np.nanmean(np.abs(measured[1:] - predicted[1:])))


def _run_gaps(study: Study, policy: str, run: str, t: Theory) -> np.ndarray:
    return np.array([_gap(m, p) for m, p in zip(study.measured(policy, run), study.trajectory(policy, run, t))])


def c3(study: Study, policy: str, t: Theory) -> Measure | None:
    runs = study.select(policy, sweep="variant")
    if runs.empty:
        return None
    per_run = {run: _run_gaps(study, policy, run, t) for run in runs["run"]}
    worst = max(per_run, key=lambda k: per_run[k].mean())
    return _measure(per_run[worst], f"worst {worst}; per variant: "
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
    return _measure(share, f"over {len(runs)} kl=ref runs; p_N > p_ref predicted by {t.name}")


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
    return _measure(worst, f"{what}, limits of {t.name}: " + ", ".join(
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
    return _measure(worst, "kl=both, p_N against the prediction at N: " + ", ".join(
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
    return _measure(values, f"{run}: measured spread {fmt_interval(*seed_interval(spread))}")


def c5b(study: Study, policy: str, t: Theory) -> Measure | None:
    """mean_std adapts to p_{n-1}: its spread after step 1 minus mean_only's (Welch interval over seeds)."""
    only = study.select(policy, sweep="variant", kl="ref", norm="mean_only")
    std_ = study.base(policy)
    if only.empty or std_.empty:
        return None
    s_only = np.array([_spread(m).mean() for m in study.measured(policy, only["run"].iloc[0])])
    s_std = np.array([_spread(m).mean() for m in study.measured(policy, std_["run"].iloc[0])])
    diff = difference_interval(s_only, s_std)
    return _measure([diff[0]], n_seeds=len(s_std), interval=diff,
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
    return _measure(rhos, "final mean PoS by beta: " + ", ".join(
        f"{b:g}: {_fmt(f)}" for b, f in zip(runs["beta"], finals.mean(axis=1))))


def c7b(study: Study, policy: str, t: Theory) -> Measure | None:
    """The curve: per seed, the largest |final mean PoS - mean predicted limit| over the beta sweep."""
    runs = _beta_runs(study, policy)
    if runs is None:
        return None
    finals = np.stack([[m[-1].mean() for m in study.measured(policy, r)] for r in runs["run"]])
    limits = np.stack([[np.nanmean(lim) for lim in study.limit(policy, r, t)] for r in runs["run"]])
    return _measure(np.abs(finals - limits).max(axis=0), "beta: final mean PoS / predicted limit: " + ", ".join(
        f"{b:g}: {_fmt(f)} / {_fmt(p)}" for b, f, p in zip(runs["beta"], finals.mean(axis=1), limits.mean(axis=1))))


# --------------------------------------------------------------------------- E2 .. E5
def _sweep_with_base(study: Study, policy: str, sweep: str, min_points: int) -> pd.DataFrame | None:
    """The sweep's runs plus its base run (mean_std, kl=ref, eps=0), sorted by the swept value."""
    base = study.base(policy)
    if base.empty:
        return None
    runs = pd.concat([base.iloc[:1], study.select(policy, sweep=sweep, variant=base["variant"].iloc[0])])
    return runs.sort_values(sweep) if runs[sweep].nunique() >= min_points else None


def e2a(study: Study, policy: str, t: Theory) -> Measure | None:
    """A measurement, no verdict: the C3 gap from the smallest to the largest G (no theory predicts its size)."""
    if not registry.policy(policy).sampled:
        return None
    runs = _sweep_with_base(study, policy, "group_size", min_points=2)
    if runs is None:
        return None
    gaps = [_run_gaps(study, policy, r, t) for r in runs["run"]]
    diff = difference_interval(gaps[0], gaps[-1])
    return _measure([diff[0]], "gap by G: " + ", ".join(f"{g:g}: {fmt_interval(*seed_interval(v))}"
                                                     for g, v in zip(runs["group_size"], gaps)),
                    interval=diff, n_seeds=len(gaps[-1]))


def e2b(study: Study, policy: str, t: Theory) -> Measure | None:
    """Practice under-amplifies: the signed mean of p_n - prediction on the base run (negative: below it)."""
    spec = registry.policy(policy)
    if not (spec.practice and spec.sampled and spec.rung in (None, "R6")):
        return None  # practice itself: tabular_sgd (R6) and the transformer family, not the ladder's rungs
    base = study.base(policy)
    if base.empty:
        return None
    run = base["run"].iloc[0]
    bias = [float(np.mean(m[1:] - p[1:])) for m, p in zip(study.measured(policy, run), study.trajectory(policy, run, t))]
    return _measure(bias, f"{run}: absolute gap {fmt_interval(*seed_interval(_run_gaps(study, policy, run, t)))}")


def e3(study: Study, policy: str, t: Theory) -> Measure | None:
    """Held-out PoS gain (iteration N - 0) per seed, with the paired t over questions beside it."""
    if registry.policy(policy).family == "tabular":
        return None  # tabular questions share no parameters: held-out PoS cannot move by construction
    base = study.select(policy, sweep="variant")
    if base.empty:
        return None
    run = base["run"].iloc[0]
    pred = study.predictions[(policy, run)]
    held = pred[pred["split"] != "train"]
    if held.empty:
        return None
    gains, ts = [], []
    for _, g in held.groupby("seed", sort=True):
        wide = g.pivot(index="iteration", columns="question", values="pos").sort_index()
        gain = wide.iloc[-1] - wide.iloc[0]
        gains.append(float(gain.mean()))
        ts.append(float(gain.mean() / (gain.std(ddof=1) / np.sqrt(len(gain)))) if gain.std() > 0 else 0.0)
    return _measure(gains, f"{run}: {held['question'].nunique()} held-out questions, paired t per seed "
                    + ", ".join(_fmt(x) for x in ts))


def e4(study: Study, policy: str, t: Theory) -> Measure | None:
    """The C3 fit with an effective beta (the theory's S, kl; beta fitted): the largest RMSE over runs.
    Where no penalty is applied (TRL's lr sweep around kl=mirror) beta_eff is the step size's regularisation."""
    explicit = study.select(policy, sweep=["variant", "beta"], kl="ref")
    implicit = study.select(policy, sweep=["variant", "lr"], kl="mirror") if "lr" in registry.policy(policy).sweeps \
        else explicit.iloc[:0]
    runs = pd.concat([explicit, implicit])
    if runs.empty:
        return None
    if t not in (C3, C3_G):  # a wrong theory is fitted on the base run only: a finite-G fit costs ~1 s per seed
        runs = runs[runs["run"].isin(study.base(policy)["run"])]
        if runs.empty:
            return None
        explicit = explicit[explicit["run"].isin(runs["run"])]
        implicit = implicit.iloc[:0]
    fits = {}
    for run in runs["run"]:
        kw = study.kwargs(policy, run, t)
        kw.pop("beta")
        fits[run] = [theory.fit_effective_beta(m[0], m, **kw) for m in study.measured(policy, run)]
    rmse = {run: np.array([f[1] for f in fit]) for run, fit in fits.items()}
    worst = max(rmse, key=lambda k: rmse[k].mean())
    beta_of = dict(zip(runs["run"], runs["beta"]))
    evidence = f"worst {worst}; beta_eff/beta: " + ", ".join(
        f"{r}: {_fmt(np.mean([f[0] for f in fits[r]]) / beta_of[r])}" for r in explicit["run"])
    if not implicit.empty:
        evidence += "; no explicit penalty (kl=mirror fit), beta_eff per lr: " + ", ".join(
            f"lr {r.lr:g}: {fmt_interval(*seed_interval([f[0] for f in fits[r.run]]))}"
            for r in implicit.sort_values("lr").itertuples())
    return _measure(rmse[worst], evidence)


def e5(study: Study, policy: str, t: Theory) -> Measure | None:
    """R1 = C3 and R2 = C3 with S_G: the largest |p_n - prediction| over variants, questions and n >= 1."""
    if registry.policy(policy).rung not in ("R1", "R2"):
        return None
    runs = study.select(policy, sweep="variant")
    worst = max((max(float(np.nanmax(np.abs(m[1:] - p[1:])))
                     for m, p in zip(study.measured(policy, r), study.trajectory(policy, r, t))), r)
                for r in runs["run"])
    return _measure([worst[0]], f"worst {worst[1]}; a numerical maximiser with no closed form in its path")


def e5_sweep(study: Study, policy: str, t: Theory) -> Measure | None:
    """R3 -> R2 as M grows, R4 -> R3 as m grows: the change of the C3_G gap from the smallest to the largest."""
    rung = registry.policy(policy).rung
    if rung not in ("R3", "R4"):
        return None
    sweep = "inner_steps" if rung == "R3" else "groups_per_question"
    runs = _sweep_with_base(study, policy, sweep, min_points=2)
    if runs is None:
        return None
    gaps = [_run_gaps(study, policy, r, t) for r in runs["run"]]
    diff = difference_interval(gaps[0], gaps[-1])
    return _measure([diff[0]], f"gap_G by {'M' if rung == 'R3' else 'm'}: " + ", ".join(
        f"{v:g}: {fmt_interval(*seed_interval(g))}" for v, g in zip(runs[sweep], gaps)), interval=diff,
                    n_seeds=len(gaps[-1]))


def e5_visible(study: Study, policy: str, t: Theory) -> Measure | None:
    """R5: one group's own maximiser sits visibly off C3_G (E[argmax] != argmax E)."""
    base = study.base(policy)
    if registry.policy(policy).rung != "R5" or base.empty:
        return None
    return _measure(_run_gaps(study, policy, base["run"].iloc[0], t), base["run"].iloc[0])


def _u_shape(study: Study, policy: str, t: Theory):
    """R6's M sweep: the gaps, and the interior M with the smallest mean gap."""
    if registry.policy(policy).rung != "R6":
        return None
    runs = _sweep_with_base(study, policy, "inner_steps", min_points=3)
    if runs is None:
        return None
    gaps = [_run_gaps(study, policy, r, t) for r in runs["run"]]
    best = 1 + int(np.argmin([g.mean() for g in gaps[1:-1]]))  # interior points only
    text = "gap_G by M: " + ", ".join(f"{m:g}: {fmt_interval(*seed_interval(g))}"
                                      for m, g in zip(runs["inner_steps"], gaps))
    return runs["inner_steps"].tolist(), gaps, best, text


def e5_u_left(study: Study, policy: str, t: Theory) -> Measure | None:
    """R6: more inner steps first shrink the gap (optimisation error): interior minimum - smallest M."""
    u = _u_shape(study, policy, t)
    if u is None:
        return None
    ms, gaps, best, text = u
    diff = difference_interval(gaps[0], gaps[best])
    return _measure([diff[0]], f"M = {ms[best]:g} vs M = {ms[0]:g}; {text}", interval=diff, n_seeds=len(gaps[0]))


def e5_u_right(study: Study, policy: str, t: Theory) -> Measure | None:
    """R6: then they grow it (fitting one group's noise): largest M - interior minimum."""
    u = _u_shape(study, policy, t)
    if u is None:
        return None
    ms, gaps, best, text = u
    diff = difference_interval(gaps[best], gaps[-1])
    return _measure([diff[0]], f"M = {ms[-1]:g} vs M = {ms[best]:g}; {text}", interval=diff, n_seeds=len(gaps[0]))


# --------------------------------------------------------------------------- the table of criteria
def _everyone(policy: str) -> bool:
    return True


def _sampled(policy: str) -> bool:
    return registry.policy(policy).sampled


@dataclass(frozen=True)
class Criterion:
    """One row kind of claims.csv: ``claim`` (``_G`` appended where judged by C3_G), how it is measured,
    how the value compares with the tolerance (``<=``, ``>=``; "" for a measurement with no verdict)."""
    claim: str
    measure: Callable[[Study, str, Theory], Measure | None]
    metric: str
    criterion: str
    tolerance: str                                 # a TOLERANCE key
    power: str = "named"                           # named | weights | null | theory-free | none
    per_prediction: bool = False                   # one row per prediction of the policy (C3 and C3_G)
    right: Callable[[str], Theory] | None = None   # the theory the row is judged by (default: the policy's own)
    wrong: Callable[[Theory], tuple[Theory, ...]] = wrong_theories
    applies: Callable[[str], bool] = _everyone


def _finite_g(policy: str) -> Theory:
    return C3_G


def _population(policy: str) -> Theory:
    return C3


CRITERIA: tuple[Criterion, ...] = (
    Criterion("C1", c1, "RMS(sampled surrogate - closed form) / RMS(its SE) with the trainer's finite-G weights, "
              "pooled over seeds", "<=", "noise_ratio", power="named", right=_finite_g, wrong=wrong_weights),
    Criterion("C2", c2, "largest median KL(pi_N | correct || pi_ref | correct), nats", "<=", "kl_in_correct",
              power="theory-free"),
    Criterion("C3", c3, "largest mean |p_n - trajectory| over variants (train, n >= 1)", "<=", "pos_gap",
              per_prediction=True),
    Criterion("C4a", c4a, "share of questions on the predicted side of p_ref at N (amplified), kl=ref runs", ">=",
              "amplified_share", per_prediction=True, wrong=lambda right: (*wrong_theories(right), NULL)),
    Criterion("C4b", c4b, "largest mean |p_N - predicted limit| over kl=ref runs", "<=", "limit_gap",
              per_prediction=True),
    Criterion("C5a", c5a, "mean_only: mean |spread after step 1 - predicted spread| (max_n>=1 |p_n - p_1|)", "<=",
              "pos_gap", per_prediction=True),
    Criterion("C5b", c5b, "spread after step 1: mean_std minus mean_only (mean_std adapts to p_n-1)", ">=", "effect",
              power="null"),
    Criterion("C6a", c6a, "mean |p_N - predicted limit| under kl=mirror (mirror -> 1)", "<=", "limit_gap",
              per_prediction=True),
    Criterion("C6b", c6b, "mean |p_N - predicted p_N| under kl=both (ref's fixed points, its own limit)", "<=",
              "limit_gap", per_prediction=True),
    Criterion("C7a", c7a, "Spearman rho(beta, final mean PoS), per seed (the sign)", "<=", "effect", power="null"),
    Criterion("C7b", c7b, "largest |final mean PoS - mean predicted limit| over the beta sweep (the curve)", "<=",
              "limit_gap", per_prediction=True),
    Criterion("E1a", c1, "C1's noise ratio with E1's finite-G weights (as C1)", "<=", "noise_ratio",
              right=_finite_g, wrong=lambda right: (replace(right, name="population weights", finite_g=False),),
              applies=_sampled),
    Criterion("E1b", c1, "C1's noise ratio with the population weights (must be rejected)", ">=", "noise_ratio",
              right=_population, wrong=lambda right: (replace(right, name="E1's finite-G weights", finite_g=True),),
              applies=_sampled),
    Criterion("E2a", e2a, "change of the C3 gap from the smallest to the largest G (a measurement)", "", "effect",
              power="none", right=_population),
    Criterion("E2b", e2b, "signed mean of p_n - trajectory on the base run (negative: practice under-amplifies)",
              "<=", "effect", power="null", per_prediction=True),
    Criterion("E3", e3, "held-out PoS gain (iteration N - 0), per seed", ">=", "effect", power="null"),
    Criterion("E4", e4, "largest RMSE of the fit with an effective beta (wrong theories: on the base run)", "<=",
              "fit_rmse", per_prediction=True,
              wrong=lambda right: tuple(w for w in wrong_theories(right) if w.beta_factor == 1.0)),
    Criterion("E5", e5, "R1/R2: largest |p_n - own prediction| over variants, questions, n >= 1", "<=", "pos_gap"),
    Criterion("E5", e5_sweep, "R3/R4: change of the C3_G gap from the smallest to the largest M / m", "<=", "effect",
              power="null", right=_finite_g),
    Criterion("E5", e5_visible, "R5: mean |p_n - C3_G| of one group's own maximiser", ">=", "visible_gap",
              power="null", right=_finite_g),
    Criterion("E5a", e5_u_left, "R6: C3_G gap at the interior minimum minus at the smallest M", "<=", "effect",
              power="null", right=_finite_g),
    Criterion("E5b", e5_u_right, "R6: C3_G gap at the largest M minus at the interior minimum", ">=", "effect",
              power="null", right=_finite_g),
)


def right_theory(c: Criterion, policy: str, prediction: str) -> Theory:
    return c.right(policy) if c.right is not None else own(prediction)
