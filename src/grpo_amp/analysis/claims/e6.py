"""E6, the GRPO family of advantage estimators (docs/theory.md E6): two measures for ``criteria``.

The runs are the estimator sweep (``VARIANT-est<name>``, runs.csv column ``estimator``) with its base
(``grpo``, the variant's own advantage). The predict stage's ``_G`` columns already use each run's
estimator (grpo_amp.estimators, the same row as the trainer's advantage): they are the right theory.

- ``e6_r2``: R2 (an exact maximiser) meets each estimator's C3 with S_G one step at a time: the
  largest |p_n - one C3_G step from the measured p_{n-1}| over estimators, questions and n >= 1. The
  named wrong theories (``theories.wrong_theories``: beta x2, population weights, ...) are computed from
  the variant's settings, so they also ignore the estimator: each must miss.
- ``e6_order``: practice ranks the estimators as C3_G predicts: Spearman's rho between the predicted
  (C3_G trajectory) and measured final mean PoS over estimators, per seed (a sign check, power "null");
  the evidence gives the share of shuffled orderings that reach the same rho (its power as a ranking).
- ``e6_rescale``: E6's exact rescalings, measured. RLOO's advantage is G/(G-1) times Dr. GRPO's and a
  sample-std advantage (verl) is sqrt((G-1)/G) times the population-std one (GRPO with eps = 0), so
  each pair's trajectories are one recurrence with beta rescaled: fitted with the same C3_G (the
  second estimator's), beta_eff(first) / beta_eff(second) = (G-1)/G and sqrt(G/(G-1)). The value per
  seed is the largest |ratio / predicted - 1| over the pairs the scale ran; the wrong theory "no
  rescaling" predicts ratio 1 (the size of the effect: 12.5% and 6.9% at G = 8).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats

from grpo_amp import estimators, registry, theory
from grpo_amp.analysis.claims.measure import Measure, fmt, measure
from grpo_amp.analysis.claims.study import Study
from grpo_amp.analysis.claims.theories import C3_G, Theory

MAX_PERMUTATIONS = 5040   # every ordering up to 7 estimators; beyond, this many seeded random ones


def estimator_runs(study: Study, policy: str) -> pd.DataFrame:
    """The estimator sweep of ``policy`` with its base run (empty where the scale made none)."""
    if "estimator" not in study.runs.columns:
        return study.runs.iloc[:0]
    sweep = study.select(policy, sweep="estimator")
    if sweep.empty:
        return sweep
    base = study.base(policy)
    base = base[base["variant"].isin(sweep["variant"].unique())]
    return pd.concat([base, sweep], ignore_index=True)


def run_estimator(row) -> str:
    """The estimator a runs.csv row's loop computes: its config's (grpo: the variant's own), except through TRL,
    whose own advantage it is (a trl run with grpo computes TRL's default: trl_family.settings.computed_estimator)."""
    name = str(row["estimator"]) if isinstance(row["estimator"], str) else "grpo"
    if registry.policy(row["policy"]).advantage == "trl":
        from grpo_amp.trl_family.settings import computed_estimator

        return computed_estimator(name, row["norm"])
    return name




def _one_step(study: Study, policy: str, run: str, t: Theory) -> list[np.ndarray]:
    if t == C3_G:  # the predict stage's column: the run's own estimator
        return study._column(policy, run, "pred_one_step_G")
    kw = study.kwargs(policy, run, t)
    return [np.vstack([m[0], theory.pos_step(m[:-1], m[0], **kw)]) for m in study.measured(policy, run)]


def e6_r2(study: Study, policy: str, t: Theory) -> Measure | None:
    if registry.policy(policy).rung != "R2":
        return None
    runs = estimator_runs(study, policy)
    if runs.empty:
        return None
    errors = {}
    for _, r in runs.iterrows():
        errors[run_estimator(r)] = max(float(np.nanmax(np.abs(m[1:] - p[1:])))
                               for m, p in zip(study.measured(policy, r["run"]), _one_step(study, policy, r["run"], t)))
    worst = max(errors, key=errors.get)
    return measure([errors[worst]], f"worst {worst}; per estimator: " + ", ".join(f"{k}: {fmt(v)}"
                                                                                   for k, v in errors.items()))


def permutation_share(predicted, measured, rho: float, limit: int = MAX_PERMUTATIONS) -> float:
    """Share of orderings of ``measured`` whose Spearman rho with ``predicted`` reaches ``rho``."""
    measured = np.asarray(measured, float)
    if math.factorial(len(measured)) <= limit:
        perms = itertools.permutations(measured)
    else:
        rng = np.random.default_rng(0)
        perms = (rng.permutation(measured) for _ in range(limit))
    rhos = np.array([stats.spearmanr(predicted, p).statistic for p in perms])
    return float(np.mean(rhos >= rho - 1e-12))


def e6_order(study: Study, policy: str, t: Theory) -> Measure | None:
    runs = estimator_runs(study, policy)
    if len(runs) < 3:
        return None
    measured = {run_estimator(r): [m[-1].mean() for m in study.measured(policy, r["run"])] for _, r in runs.iterrows()}
    predicted = {run_estimator(r): [p[-1].mean() for p in study.trajectory(policy, r["run"], t)] for _, r in runs.iterrows()}
    names = list(measured)
    n_seeds = min(len(v) for v in measured.values())
    rhos = [stats.spearmanr([predicted[k][s] for k in names], [measured[k][s] for k in names]).statistic
            for s in range(n_seeds)]
    mean_m = [float(np.mean(measured[k])) for k in names]
    mean_p = [float(np.mean(predicted[k])) for k in names]
    share = permutation_share(mean_p, mean_m, float(np.nanmean(rhos)))
    return measure(rhos, f"{len(names)} estimators; share of shuffled orderings reaching rho: {fmt(share)}; "
                   "predicted/measured final PoS: "
                   + ", ".join(f"{k} {fmt(p)}/{fmt(m)}" for k, p, m in zip(names, mean_p, mean_m)))


# (first, second, predicted beta_eff(first)/beta_eff(second) at G, why): docs/theory.md E6's exact rescalings
RESCALINGS = (
    ("rloo", "dr_grpo", lambda G: (G - 1) / G, "RLOO's A = G/(G-1) x Dr. GRPO's"),
    ("verl", "grpo", lambda G: math.sqrt(G / (G - 1)), "sample std = sqrt(G/(G-1)) x population std"),
)


def _fit_beta(study: Study, policy: str, run: str, under: str, base: dict) -> np.ndarray:
    """beta_eff per seed of ``run``'s measured trajectory, fitted with estimator ``under``'s C3_G."""
    est = estimators.resolve(under, base["norm"], base["std"], float(base["eps"]))
    kw = dict(kl=base["kl"], beta_prev=float(base["beta_prev"]), group_size=int(base["group_size"]),
              **est.theory_kwargs())
    return np.array([theory.fit_effective_beta(m[0], m, **kw)[0] for m in study.measured(policy, run)])


def e6_rescale(study: Study, policy: str, t: Theory) -> Measure | None:
    runs = estimator_runs(study, policy)
    if runs.empty:
        return None
    by_name = {run_estimator(r): r for _, r in runs.iterrows()}
    errors, notes = [], []
    for first, second, factor, why in RESCALINGS:
        if first not in by_name or second not in by_name:
            continue
        base = by_name[second].to_dict()
        if base["kl"] not in ("ref", "mirror") or (second == "grpo" and (base["norm"] != "mean_std" or base["eps"] != 0)):
            continue  # the rescaling is exact for a one-term penalty and GRPO's eps = 0 only
        G = int(base["group_size"])
        ratio = (_fit_beta(study, policy, by_name[first]["run"], second, base)
                 / _fit_beta(study, policy, by_name[second]["run"], second, base))
        predicted = 1.0 if t.null else factor(G)
        errors.append(np.abs(ratio / predicted - 1.0))
        notes.append(f"{first}/{second} {fmt(float(np.mean(ratio)))} (predicted {fmt(factor(G))}: {why})")
    if not errors:
        return None
    return measure(np.max(np.vstack(errors), axis=0), f"beta_eff ratios fitted with the second's C3_G, G as run: "
                   + "; ".join(notes))
