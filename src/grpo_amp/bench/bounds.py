"""What bounds one iteration of ours: matmul kernels, the other kernels (memory traffic), or Python and dispatch.

    split = time_split(ours, repeat=5)     # ours: a callable running one iteration (trl_family.bench.OurIteration)
    print(format_split(split, flops=iteration_flops(...), peak=matmul_peak(threads)))

torch.profiler records every aten op of ``repeat`` iterations. An op's *self* CPU time is its own
kernel's time (nested ops excluded), so the self times of all ops sum to the time spent in kernels;
what the wall clock has beyond that sum is Python, autograd's bookkeeping and the dispatcher (per-op
launch cost). Matmul kernels (mm, addmm, bmm, baddbmm) are where the model's FLOPs are: their
FLOP/s against the fp32 matmul peak says how well the kernels themselves do at these shapes; the
other kernels (softmax, norms, elementwise, copies) do few FLOPs per byte and are bound by memory
traffic. The profiler adds its own per-op cost, so wall time here runs above the unprofiled time;
the shares, not the seconds, are what to read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

MATMUL_OPS = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"})


@dataclass(frozen=True)
class TimeSplit:
    """Seconds per iteration: wall, in matmul kernels, in other kernels; aten ops per iteration."""
    wall_s: float
    matmul_s: float
    other_kernel_s: float
    ops: float

    @property
    def overhead_s(self) -> float:
        """Python, autograd and dispatch: the wall time outside every kernel."""
        return max(self.wall_s - self.matmul_s - self.other_kernel_s, 0.0)


def time_split(iteration: Callable[[], object], repeat: int = 5) -> TimeSplit:
    """Profile ``repeat`` calls of ``iteration`` (after one unprofiled warm-up call): per-iteration means."""
    from torch.profiler import ProfilerActivity, profile

    iteration()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(repeat):
            iteration()
        wall = time.perf_counter() - start
    matmul = other = ops = 0.0
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue
        self_s = event.self_cpu_time_total / 1e6
        ops += event.count
        if event.key in MATMUL_OPS:
            matmul += self_s
        else:
            other += self_s
    return TimeSplit(wall / repeat, matmul / repeat, other / repeat, ops / repeat)


def format_split(split: TimeSplit, flops: float, peak: float) -> list[str]:
    """The lines ``bench trl`` prints under its figures: where one iteration of ours spends its time."""
    w = split.wall_s
    launch = split.overhead_s / split.ops if split.ops else float("nan")
    return [
        f"where ours spends one iteration (torch.profiler, {split.ops:.0f} aten ops per iteration; profiled wall "
        f"{w * 1e3:.1f} ms):",
        f"  matmul kernels      {split.matmul_s * 1e3:7.1f} ms ({100 * split.matmul_s / w:4.1f}%): "
        f"{flops / split.matmul_s / 1e9 if split.matmul_s else float('nan'):.1f} GFLOP/s inside them = "
        f"{100 * flops / split.matmul_s / peak if split.matmul_s else float('nan'):.0f}% of the matmul peak",
        f"  other kernels       {split.other_kernel_s * 1e3:7.1f} ms ({100 * split.other_kernel_s / w:4.1f}%): "
        "softmax, norms, elementwise, copies (memory traffic)",
        f"  Python and dispatch {split.overhead_s * 1e3:7.1f} ms ({100 * split.overhead_s / w:4.1f}%): "
        f"{launch * 1e6:.1f} us per op outside kernels",
    ]
