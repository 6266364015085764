"""``grpo-amp bench theory``: the closed-form theory at the sizes an experiment sweep needs."""

from __future__ import annotations

import numpy as np

from grpo_amp import theory
from grpo_amp.bench.timing import Timing, format_timings, median_time


def theory_grid(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded grid of (p_ref, beta): p_ref uniform in [0.001, 0.999], beta log-uniform in [0.05, 20].

    Wide on purpose: it mixes fast convergence, limits at 1, slow approaches and 2-cycles (C4).
    """
    rng = np.random.default_rng(seed)
    p_ref = rng.uniform(0.001, 0.999, n)
    beta = np.exp(rng.uniform(np.log(0.05), np.log(20.0), n))
    return p_ref, beta


# Sizes and goals of the theory benchmark: (what, size, goal in seconds).
THEORY_GOALS = {
    "predicted_limit": (100_000, 1.0),
    "fixed_points_batch": (10_000, 2.0),
    "pos_recurrence": (100_000, 0.2),
}
RECURRENCE_ITERS = 50


def bench_predicted_limit(repeat: int) -> Timing:
    n, goal = THEORY_GOALS["predicted_limit"]
    p_ref, beta = theory_grid(n)
    seconds = median_time(lambda: theory.predicted_limit(p_ref, beta), repeat)
    return Timing(f"predicted_limit, {n:,} (p_ref, beta)", seconds, goal)


def bench_fixed_points_batch(repeat: int) -> Timing:
    n, goal = THEORY_GOALS["fixed_points_batch"]
    p_ref, beta = theory_grid(n)
    seconds = median_time(lambda: theory.fixed_points_batch(p_ref, beta), repeat)
    return Timing(f"fixed_points_batch, {n:,} (p_ref, beta)", seconds, goal)


def bench_pos_recurrence(repeat: int) -> Timing:
    n, goal = THEORY_GOALS["pos_recurrence"]
    p_ref, beta = theory_grid(n)
    seconds = median_time(lambda: theory.pos_recurrence(p_ref, RECURRENCE_ITERS, beta=beta), repeat)
    return Timing(f"pos_recurrence, {n:,} questions x {RECURRENCE_ITERS} iters", seconds, goal)


def bench_theory(repeat: int = 5) -> list[Timing]:
    return [bench(repeat) for bench in (bench_predicted_limit, bench_fixed_points_batch, bench_pos_recurrence)]


def report(repeat: int = 5, threads: int | None = None) -> str:
    """The timings table; ``threads`` does not apply (numpy, one thread)."""
    return format_timings(bench_theory(repeat), repeat)
