"""Intervals and the interval verdict: every statistic a verdict rests on, with ``CONFIDENCE`` set once.

    mean, lo, hi = seed_interval([0.21, 0.19, 0.24])      # Student t over seeds
    diff, lo, hi = difference_interval(a, b)              # mean(b) - mean(a), Welch
    lo, hi = wilson_interval(successes, n)                # a Monte Carlo PoS's binomial interval
    interval_verdict(lo, hi, threshold)                   # holds | fails | inconclusive
    row_verdict(lo, hi, tolerance, criterion, power)      # a claims.csv row's verdict from its own columns
    noise_ratio(measured, closed_form, se)                # pooled over every check: RMS error / RMS SE

The seeds are the repeats: a number is computed per seed, then reported as the mean over seeds with
its interval (a deterministic policy has one seed and its interval is the point). Pure numpy/scipy:
no torch, no files.
"""

from __future__ import annotations

import numpy as np
from scipy import special
from scipy.stats import t as student_t

from grpo_amp.schema import VERDICTS

HOLDS, FAILS, INCONCLUSIVE, NO_POWER, MEASURED = VERDICTS
CONFIDENCE = 0.95


def seed_interval(values) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean over seeds with its 95% t-interval; (x, x, x) for one seed."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return np.nan, np.nan, np.nan
    mean = float(x.mean())
    if len(x) == 1:
        return mean, mean, mean
    half = float(student_t.ppf(0.5 + CONFIDENCE / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half


def difference_interval(a, b) -> tuple[float, float, float]:
    """mean(b) - mean(a) over independent seeds, with a 95% Welch interval (a point for one seed each)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(b.mean() - a.mean())
    var = (a.var(ddof=1) / len(a) if len(a) > 1 else 0.0) + (b.var(ddof=1) / len(b) if len(b) > 1 else 0.0)
    if var == 0:
        return diff, diff, diff
    dof = max(min(len(a), len(b)) - 1, 1)  # conservative Welch degrees of freedom
    half = float(student_t.ppf(0.5 + CONFIDENCE / 2, dof) * np.sqrt(var))
    return diff, diff - half, diff + half


def wilson_interval(successes, n, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion (good near 0 and 1, unlike the normal one)."""
    k, n = np.asarray(successes, float), np.asarray(n, float)
    z = special.ndtri(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def interval_verdict(lo: float, hi: float, threshold: float, holds_below: bool = True) -> str:
    """holds where [lo, hi] lies inside the threshold, fails where wholly outside, else inconclusive.

    ``holds_below``: the claim holds for values <= threshold (a gap, an error); otherwise for values
    >= threshold (a share, a visible effect).
    """
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return INCONCLUSIVE
    inside, outside = (hi <= threshold, lo > threshold) if holds_below else (lo >= threshold, hi < threshold)
    return HOLDS if inside else FAILS if outside else INCONCLUSIVE


def combine(*verdicts: str) -> str:
    """All parts must hold; any that fails fails the claim; otherwise it is inconclusive."""
    return FAILS if FAILS in verdicts else HOLDS if all(v == HOLDS for v in verdicts) else INCONCLUSIVE


def noise_ratio(measured, closed_form, se) -> float:
    """RMS(measured - closed form) / RMS(standard error): about 1 when sampling noise is the only error.

    Robust where per-check z-scores are not: importance ratios pi_n/pi_{n-1} are heavy-tailed, so a
    single check's SE from a few groups can be far off, while mean(se^2) still estimates the mean
    variance without bias. Pooled over every check of every seed, its uncertainty is already in the
    checks' standard errors.
    """
    diff = np.asarray(measured - closed_form, float)
    se = np.asarray(se, float)
    ok = np.isfinite(diff) & np.isfinite(se)
    rms_se = np.sqrt(np.mean(se[ok] ** 2))
    rms_err = np.sqrt(np.mean(diff[ok] ** 2))
    return float(rms_err / rms_se) if rms_se > 0 else (0.0 if rms_err < 1e-9 else np.inf)


def null_rejected(lo: float, hi: float, criterion: str) -> bool:
    """An effect check's power against the no-effect null (0): its interval lies wholly on the claimed side of 0."""
    return bool(hi < 0) if criterion == "<=" else bool(lo > 0)


def rejected_count(power: str) -> int | None:
    """k of a ``power`` column "k/n" (None where the row has none: a measurement)."""
    return int(str(power).split("/")[0]) if isinstance(power, str) and "/" in power else None


def row_verdict(lo: float, hi: float, tolerance: float, criterion: str, power: str) -> str:
    """The claims table's verdict from a row's own columns, the one rule every row follows.

    ``criterion`` "<=": the value must lie at or below ``tolerance``; ">=": at or above; "": a measurement
    with no verdict ("measured"). The interval rule decides holds / fails / inconclusive; a row that would
    hold but rejects none of its wrong theories (``power`` "0/n") says "no power": it could not fail a
    wrong theory on the same data, so it cannot hold.
    """
    if not criterion:
        return MEASURED
    verdict = interval_verdict(lo, hi, tolerance, holds_below=criterion == "<=")
    return NO_POWER if verdict == HOLDS and not rejected_count(power) else verdict
