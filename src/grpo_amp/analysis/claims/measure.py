"""What every claim measure returns, and the tolerances it is judged by.

    m = Measure(values, evidence)   # per-seed values; m.summary() = (mean, lo, hi)
    tolerance("pos_gap", "tabular_sgd")   # TOLERANCE by the policy's tolerance kind (grpo_amp.registry)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grpo_amp import registry
from grpo_amp.analysis.stats import seed_interval

TOLERANCE = {
    "pos_gap": {registry.ROUNDOFF: 1e-9, registry.OPTIMISER: 1e-6, registry.PRACTICE: 0.05},  # mean |p - C3|
    "kl_in_correct": {registry.ROUNDOFF: 1e-9, registry.OPTIMISER: 1e-6, registry.PRACTICE: 0.01},  # nats
    "noise_ratio": 1.5,        # RMS error / RMS SE in C1's check (about 1 when sampling noise is the only error)
    "amplified_share": {registry.ROUNDOFF: 1.0, registry.OPTIMISER: 1.0, registry.PRACTICE: 0.95},
    "limit_gap": 0.05,         # N iterations approximate C4's limit (C4b, C6, C7b)
    "fit_rmse": {registry.ROUNDOFF: 1e-6, registry.OPTIMISER: 1e-5, registry.PRACTICE: 0.05},
    "effect": 0.0,             # a sign or a change (C5b, C7a, E2b, E3, E5 R3..R6): its side of 0
    "visible_gap": 0.01,       # E5 R5: the one-group maximiser's gap must lie above this
    # E6c: |beta_eff ratio / predicted - 1|; the effects are 12.5% and 6.9% at G = 8, so 0.05 tells them from 1
    "rescale_error": {registry.ROUNDOFF: 1e-6, registry.OPTIMISER: 1e-4, registry.PRACTICE: 0.05},
    # E6d: RMS over seeds of the redraw z-scores; were each z N(0, 1), RMS > 3 would have probability
    # P(chi^2_k > 9k) <= 0.0027 at any k seeds; the counts are skewed, and a simulation of the right law at the
    # smoke's size (240 counts, 2 seeds, p uniform in 0.02..0.99, 400 studies) put 0.25% above 3 (sampling noise)
    "redraw_z": 3.0,
    # E6e: share of the runaway basin on the runaway side (as C4a's share; the exact rungs: every question)
    "runaway_share": {registry.ROUNDOFF: 1.0, registry.OPTIMISER: 1.0, registry.PRACTICE: 0.95},
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


def measure(values, evidence: str = "", interval=None, n_seeds: int | None = None) -> Measure:
    return Measure(np.atleast_1d(np.asarray(values, dtype=float)), evidence, interval, n_seeds)


def fmt(x: float) -> str:
    return f"{x:.3g}"


def fmt_interval(mean: float, lo: float, hi: float) -> str:
    """``m [lo, hi]``, or ``m`` alone where there is no interval (one seed, or none computed)."""
    no_interval = lo == hi or (np.isnan(lo) and np.isnan(hi))
    return fmt(mean) if no_interval else f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]"
