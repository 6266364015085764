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
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats

from grpo_amp import registry, theory
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


def _name(row) -> str:
    return str(row["estimator"]) if isinstance(row["estimator"], str) else "grpo"


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
        errors[_name(r)] = max(float(np.nanmax(np.abs(m[1:] - p[1:])))
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
    measured = {_name(r): [m[-1].mean() for m in study.measured(policy, r["run"])] for _, r in runs.iterrows()}
    predicted = {_name(r): [p[-1].mean() for p in study.trajectory(policy, r["run"], t)] for _, r in runs.iterrows()}
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
