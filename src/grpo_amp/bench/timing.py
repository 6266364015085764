"""Medians of wall time against goals: what a benchmark with fixed goals reports.

Medians over ``repeat`` runs, so one slow run (a page fault, another process) does not decide the verdict.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


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


def format_timings(timings: list[Timing], repeat: int) -> str:
    """A plain-text table: task, median time, goal, met."""
    width = max(len(t.task) for t in timings)
    lines = [f"{'task':<{width}}  {'median s':>9}  {'goal s':>7}  met   (median of {repeat})"]
    for t in timings:
        lines.append(f"{t.task:<{width}}  {t.seconds:>9.3f}  {t.goal_s:>7.2f}  {'yes' if t.met else 'NO'}")
    return "\n".join(lines)
