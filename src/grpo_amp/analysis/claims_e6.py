"""E6's verdict per policy (docs/theory.md E6, the GRPO family of advantage estimators).

    verdict = claim_e6(study, "tabular_r2")   # a claims.Verdict, or None without estimator runs

The runs are the estimator sweep (``VARIANT-est<name>``, runs.csv column ``estimator``) with its
base (the variant's own advantage, ``grpo``).
- R2 (an exact maximiser, tolerance kind "optimiser"): every estimator's PoS meets its own C3 with S_G
  one step at a time: the largest |p_n - C3_G(p_{n-1})| over estimators, questions and iterations must
  stay within the optimiser's tolerance. A wrong S_G (another estimator's) misses by 1e-2 or more.
- practice policies: the predicted ordering of the estimators' final PoS (C3_G's trajectory from
  p_ref) against the measured one: Spearman's rho per seed, with its interval over seeds and, as its
  power, the share of orderings (all permutations of the measured finals) that reach the mean rho.
  Holds where the whole interval lies above 0 and fewer than 5% of orderings do as well; fails where
  it lies below 0. The shape test (runs.csv shape_slope, shape_r2) is quoted as evidence.
Imports claims lazily: claims.py imports this module for its CLAIMS table.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats

PERMUTATION_LEVEL = 0.05  # the share of orderings that may reach rho for the ordering to count as found
MAX_PERMUTATIONS = 5040   # all of them up to 7 estimators; beyond, this many seeded random ones


def _estimator_runs(study, policy: str) -> pd.DataFrame:
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


def _finals(train: pd.DataFrame) -> pd.Series:
    """Per seed: (measured final mean PoS, predicted final mean PoS with S_G)."""
    last = train[train["iteration"] == train["iteration"].max()]
    return last.groupby("seed")[["pos", "pred_trajectory_G"]].mean()


def _permutation_share(predicted: np.ndarray, measured: np.ndarray, rho: float) -> float:
    """Share of orderings of the measured values whose rho with the prediction reaches ``rho``."""
    n = len(measured)
    if math.factorial(n) <= MAX_PERMUTATIONS:
        perms = itertools.permutations(measured)
    else:
        rng = np.random.default_rng(0)
        perms = (rng.permutation(measured) for _ in range(MAX_PERMUTATIONS))
    rhos = np.array([stats.spearmanr(predicted, p).statistic for p in perms])
    return float(np.mean(rhos >= rho - 1e-12))


def claim_e6(study, policy: str):
    from grpo_amp import registry
    from grpo_amp.analysis import claims as C
    from grpo_amp.analysis.stats import FAILS, HOLDS, INCONCLUSIVE, interval_verdict, seed_interval

    runs = _estimator_runs(study, policy)
    if runs.empty:
        return None
    if registry.policy(policy).tolerance == registry.OPTIMISER:
        errors = {}
        for _, r in runs.iterrows():
            train = study.train_rows(policy, r["run"])
            later = train[train["iteration"] >= 1]
            errors[_name(r)] = float((later["pos"] - later["pred_one_step_G"]).abs().max())
        tol = C.tolerance("pos_gap", policy)
        worst = max(errors, key=errors.get)
        return C._verdict(interval_verdict(errors[worst], errors[worst], tol),
                          "largest |p_n - C3 one step with the estimator's S_G| over estimators (train, n >= 1)",
                          errors[worst], tol, f"worst {worst}; per estimator: "
                          + ", ".join(f"{k}: {C._fmt(v)}" for k, v in errors.items()))
    if len(runs) < 3:
        return None
    finals = {_name(r): _finals(study.train_rows(policy, r["run"])) for _, r in runs.iterrows()}
    seeds = sorted(set.intersection(*(set(f.index) for f in finals.values())))
    names = list(finals)
    rhos = []
    for s in seeds:
        measured = np.array([finals[k].loc[s, "pos"] for k in names])
        predicted = np.array([finals[k].loc[s, "pred_trajectory_G"] for k in names])
        rhos.append(stats.spearmanr(predicted, measured).statistic)
    rhos = np.array(rhos, dtype=float)
    mean_measured = np.array([finals[k]["pos"].mean() for k in names])
    mean_predicted = np.array([finals[k]["pred_trajectory_G"].mean() for k in names])
    share = _permutation_share(mean_predicted, mean_measured, float(np.nanmean(rhos)))
    _, lo, hi = seed_interval(rhos)
    verdict = (HOLDS if lo > 0 and share < PERMUTATION_LEVEL else FAILS if hi < 0 else INCONCLUSIVE)
    shape = ""
    if "shape_r2" in runs.columns:
        shape = "; shape test slope/R^2: " + ", ".join(
            f"{_name(r)} {C._fmt(r['shape_slope'])}/{C._fmt(r['shape_r2'])}" for _, r in runs.iterrows())
    return C._verdict(verdict, "Spearman rho(predicted final PoS with S_G, measured) over estimators",
                      rhos, 0.0, f"{len(names)} estimators; share of orderings reaching rho {C._fmt(share)} "
                      f"(holds below {PERMUTATION_LEVEL}); predicted/measured: "
                      + ", ".join(f"{k} {C._fmt(p)}/{C._fmt(m)}" for k, p, m in zip(names, mean_predicted, mean_measured))
                      + shape)
