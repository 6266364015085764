"""``grpo-amp bench scaling``: how one GRPO iteration's cost grows, ours and TRL's, and what fits in 24 GB.

From ``bench trl``'s setting (32 questions, G = 8, at most 4 completion tokens, width 128), one knob at
a time grows over four or more values: questions, G, completion length (``answer_digits`` + <eos>),
model width (hidden, MLP = 2 x hidden). At each point: the median time of one iteration of ours
(``grpo_update`` with the frozen copy train() makes, as ``bench trl`` times it) and, where TRL is
installed, of TRL's ``GRPOTrainer`` at equal work (``trl_family.bench.bench_trl``, interleaved in one
process); and the peak memory of one iteration of ours. Per knob, the exponent b of time ~ x^b is
the least-squares slope of log(time) on log(x).

Memory is measured, not modelled: before an iteration, freed heap goes back to the OS
(``malloc_trim``) and the kernel's peak-RSS mark is reset (``/proc/self/clear_refs`` = 5); after it,
peak RSS (``VmHWM``) minus RSS before is the iteration's peak (activations, logits, gradients, Adam
moments, the frozen copies). The largest size that fits in a memory budget (24 GB: a consumer GPU or
a laptop) is that peak's own power law along the knob, extrapolated from the measured points, the
other knobs at their base values. Where the kernel does not allow the reset, the column is empty.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUDGET_BYTES = 24e9  # "fits in 24 GB"

# knob -> (TrlSetup fields it sets, values); the base setting (TrlSetup's defaults) is one value of each
AXES: dict[str, list[int]] = {
    "questions": [8, 16, 32, 64],
    "group_size": [2, 4, 8, 16],
    "completion_len": [2, 3, 4, 6],   # at most T tokens: answer_digits = T - 1, then <eos>
    "width": [32, 64, 128, 256],      # hidden; MLP 2 x hidden, 4 heads
}


def setup_at(base, knob: str, x: int):
    """``base`` (a TrlSetup) with one knob set to ``x``; ValueError naming an unknown knob."""
    if knob == "questions":
        return dataclasses.replace(base, n_questions=x)
    if knob == "group_size":
        return dataclasses.replace(base, group_size=x)
    if knob == "completion_len":
        return dataclasses.replace(base, answer_digits=x - 1)
    if knob == "width":
        return dataclasses.replace(base, hidden=x, intermediate=2 * x)
    raise ValueError(f"knob must be one of {', '.join(AXES)}; got {knob!r}")


# --------------------------------------------------------------------------- fits
def power_law(x, y) -> tuple[float, float]:
    """(b, a) of y = a x^b by least squares on log y = log a + b log x (points with y > 0)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = y > 0
    if keep.sum() < 2:
        return float("nan"), float("nan")
    b, log_a = np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)
    return float(b), float(math.exp(log_a))


STATE_COPIES = 6  # parameters, gradients, Adam's two moments, the frozen copies pi_(n-1) and pi_ref; fp32


def width_by_parameters(budget: float, layers: int = 2, vocab: int = 16) -> float:
    """The width whose training state alone (STATE_COPIES x 4 bytes x parameters) fills ``budget``.

    Parameters at width w, MLP 2w: layers x (4 w^2 attention + 3 x 2 w^2 MLP) + 2 vocab w (embedding,
    untied head). A fit of measured peaks at small widths sees activations (linear in w), not this w^2.
    """
    a, b = layers * 10.0, 2.0 * vocab  # params = a w^2 + b w
    c = budget / (STATE_COPIES * 4)
    return (-b + math.sqrt(b * b + 4 * a * c)) / (2 * a)


def largest_within(x, y, budget: float) -> float:
    """The x at which y's fitted power law reaches ``budget`` (nan if y does not grow with x)."""
    b, a = power_law(x, y)
    if not (b > 0 and a > 0):
        return float("nan")
    return (budget / a) ** (1 / b)


# --------------------------------------------------------------------------- memory
class PeakMemory:
    """Peak RSS of a block above the RSS at its start, in bytes (Linux; ``available`` False elsewhere)."""

    def __init__(self):
        self._libc = None
        try:
            self._libc = ctypes.CDLL("libc.so.6")
            Path("/proc/self/clear_refs").write_text("5")
            self.available = True
        except OSError:
            self.available = False

    @staticmethod
    def _status(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise OSError(f"/proc/self/status has no {field}")

    def __enter__(self):
        if self.available:
            self._libc.malloc_trim(0)
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
            self.start = self._status("VmRSS")
        return self

    def __exit__(self, *exc):
        self.peak = self._status("VmHWM") - self.start if self.available else float("nan")
        return False


# --------------------------------------------------------------------------- the benchmark
@dataclass
class Point:
    knob: str
    x: int
    ours_s: float
    trl_s: float      # nan without TRL
    peak_bytes: float  # ours, one iteration; nan where not measurable


def measure_ours(setup, repeat: int, memory: PeakMemory) -> tuple[float, float]:
    """Median seconds of one iteration of ours (frozen copy + grpo_update) and its peak memory, without TRL."""
    import tempfile

    from grpo_amp.trl_family.bench import OurIteration, bench_task, save_start_model
    from grpo_amp.policies.transformer import TransformerPolicy

    task, questions, _ = bench_task(setup)
    with tempfile.TemporaryDirectory(prefix="grpo-amp-bench-scaling-") as tmp:
        save_start_model(setup, task, tmp)
        policy = TransformerPolicy.load(tmp, task, device="cpu")
    ours = OurIteration(policy, task, questions, setup.our_config())
    for _ in range(setup.warmup):
        ours()
    with memory:
        ours()
    for _ in range(repeat - 1):
        ours()
    times = [c + u for c, u in zip(ours.copy_s[setup.warmup:], ours.update_s[setup.warmup:])]
    return statistics.median(times), memory.peak


def bench_scaling(repeat: int = 3, threads: int | None = None, axes: dict[str, list[int]] | None = None,
                  with_trl: bool | None = None, base=None) -> tuple[list[Point], int, bool]:
    """Time every point of ``axes`` (default AXES): (points, threads, whether TRL was timed).

    with_trl None: TRL where it is installed. Ours is timed on its own (``measure_ours``) for the memory
    figure, and beside TRL in ``bench_trl``'s interleaved rounds for the ratio.
    """
    from grpo_amp.trl_family.bench import TrlSetup, bench_trl, set_threads

    base = base or TrlSetup()
    axes = AXES if axes is None else axes
    threads = set_threads(threads)
    if with_trl is None:
        try:
            import trl  # noqa: F401
            with_trl = True
        except ImportError:
            with_trl = False
    memory = PeakMemory()
    points = []
    for knob, values in axes.items():
        for x in values:
            setup = setup_at(base, knob, x)
            ours_s, peak = measure_ours(setup, repeat, memory)
            trl_s = float("nan")
            if with_trl:
                result = bench_trl(repeat, threads, setup)
                ours_s, trl_s = result.ours_median + statistics.median(result.copy_s), result.trl_median
            points.append(Point(knob, x, ours_s, trl_s, peak))
    return points, threads, with_trl


def format_scaling(points: list[Point], threads: int, with_trl: bool, budget: float = BUDGET_BYTES) -> str:
    """The table of points, then per knob the fitted exponents and the largest size within ``budget``."""
    lines = [f"bench scaling: one GRPO iteration (ours: frozen copy + grpo_update; TRL: one GRPOTrainer step), "
             f"CPU, {threads} thread(s); one knob at a time from bench trl's setting",
             f"{'knob':<15} {'x':>5} {'ours ms':>9} {'TRL ms':>9} {'TRL/ours':>8} {'ours peak MB':>12}"]
    for p in points:
        ratio = p.trl_s / p.ours_s if with_trl else float("nan")
        lines.append(f"{p.knob:<15} {p.x:>5} {p.ours_s * 1e3:>9.1f} {p.trl_s * 1e3:>9.1f} {ratio:>8.2f} "
                     f"{p.peak_bytes / 1e6:>12.1f}")
    lines.append(f"fitted exponents (time ~ x^b, log-log least squares) and the largest x whose extrapolated "
                 f"peak memory of ours fits in {budget / 1e9:g} GB (the other knobs at their base values; width: "
                 f"at most {width_by_parameters(budget):,.0f}, where the training state alone fills it):")
    for knob in dict.fromkeys(p.knob for p in points):
        mine = [p for p in points if p.knob == knob]
        x = [p.x for p in mine]
        b_ours, _ = power_law(x, [p.ours_s for p in mine])
        b_trl, _ = power_law(x, [p.trl_s for p in mine]) if with_trl else (float("nan"), 0.0)
        b_mem, _ = power_law(x, [p.peak_bytes for p in mine])
        fits = largest_within(x, [p.peak_bytes for p in mine], budget)
        if knob == "width":  # the parameters' w^2 takes over where the measured (activation-bound) fit cannot see it
            fits = min(fits, width_by_parameters(budget)) if math.isfinite(fits) else fits
        lines.append(f"  {knob:<15} ours b = {b_ours:5.2f}   TRL b = {b_trl:5.2f}   memory b = {b_mem:5.2f}   "
                     f"largest in {budget / 1e9:g} GB: {fits:,.0f}" if math.isfinite(fits) else
                     f"  {knob:<15} ours b = {b_ours:5.2f}   TRL b = {b_trl:5.2f}   memory b = {b_mem:5.2f}   "
                     f"largest in {budget / 1e9:g} GB: not extrapolable (memory does not grow with it here)")
    if not with_trl:
        lines.append("TRL not timed (not installed, or left out): its columns are empty (pip install -e . brings it)")
    return "\n".join(lines)


def report(repeat: int = 3, threads: int | None = None) -> str:
    return format_scaling(*bench_scaling(repeat, threads))
