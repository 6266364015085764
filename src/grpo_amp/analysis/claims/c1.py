"""C1/E1: the sampled surrogate against its closed form w+ p_n - w- (1 - p_n) under a theory's weights.

The C1 table (train/{policy}/{run}/c1.csv) holds fresh groups' surrogate and its standard error per
question, iteration and seed; the noise ratio RMS(error) / RMS(SE) is about 1 when sampling noise alone
separates them (``grpo_amp.analysis.stats.noise_ratio``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from grpo_amp.analysis.claims.measure import TOLERANCE, WEIGHT_ERROR_GRID, Measure, fmt
from grpo_amp.analysis.claims.study import Study
from grpo_amp.analysis.claims.theories import C3_G, Theory, weights
from grpo_amp.analysis.stats import noise_ratio


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
                f"{fmt((both['surrogate'] - t.weight_factor * both['closed']).abs().mean())}, "
                f"RMS SE {fmt(np.sqrt((both['se'] ** 2).mean()))}")
    if t == C3_G:  # the row's own weights (C1, E1a): how small an error it would catch
        d = smallest_detected_weight_error(study, policy, t)
        evidence += ("; smallest weight error it detects: none up to 50%" if np.isnan(d) else
                     f"; smallest weight error it detects: {d:.0%} (x{1 + d:g} and x{1 - d:g} both rejected)")
    return Measure(np.array([ratio]), evidence, n_seeds=int(both["seed"].nunique()))
