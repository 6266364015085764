"""Benchmarks behind ``grpo-amp bench <name>``.

    grpo-amp bench theory --repeat 5

Each benchmark is a function ``(repeat) -> list[Timing]`` registered in :data:`BENCHMARKS`; a new
one (``trl``, ``pipeline``) only needs a function and a registry entry. Timings are medians over
``repeat`` runs, so one slow run (a page fault, another process) does not decide the verdict.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from grpo_amp import theory


@dataclass(frozen=True)
class Timing:
    """Median wall time of one task against its goal."""
    task: str
    seconds: float
    goal_s: float

    @property
    def met(self) -> bool:
        return self.seconds <= self.goal_s


def median_time(func: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls of ``func``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    """The closed-form theory at the sizes an experiment sweep needs."""
    return [bench(repeat) for bench in (bench_predicted_limit, bench_fixed_points_batch, bench_pos_recurrence)]


BENCHMARKS: dict[str, Callable[[int], list[Timing]]] = {
    "theory": bench_theory,
}


def run_benchmark(name: str, repeat: int = 5) -> list[Timing]:
    """Run the benchmark registered as ``name``; a bad name or repeat raises ValueError naming it."""
    if name not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {', '.join(BENCHMARKS)}; got {name!r}")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an integer >= 1; got {repeat!r}")
    return BENCHMARKS[name](repeat)


def format_timings(timings: list[Timing], repeat: int) -> str:
    """A plain-text table: task, median time, goal, met."""
    width = max(len(t.task) for t in timings)
    lines = [f"{'task':<{width}}  {'median s':>9}  {'goal s':>7}  met   (median of {repeat})"]
    for t in timings:
        lines.append(f"{t.task:<{width}}  {t.seconds:>9.3f}  {t.goal_s:>7.2f}  {'yes' if t.met else 'NO'}")
    return "\n".join(lines)
