"""``grpo-amp bench scaling`` and ``bench trl``'s time split: the fits against closed forms, the memory probe
against a known allocation, the profiler split against a known op sequence, and the plumbing at tiny sizes
(no timing is asserted: speed goals live in benchmarks, not tests)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from grpo_amp.bench.bounds import TimeSplit, format_split, time_split
from grpo_amp.bench.scaling import (AXES, STATE_COPIES, PeakMemory, bench_scaling, format_scaling, largest_within,
                                    power_law, setup_at, width_by_parameters)
from grpo_amp.trl_family.bench import TrlSetup, bench_task


def test_power_law_recovers_exponent_and_coefficient():
    x = [2, 4, 8, 16]
    b, a = power_law(x, [3.0 * v ** 1.5 for v in x])
    assert b == pytest.approx(1.5) and a == pytest.approx(3.0)
    b, _ = power_law(x, [7.0, 7.0, 7.0, 7.0])
    assert b == pytest.approx(0.0, abs=1e-12)


def test_largest_within_inverts_the_fitted_law():
    x = [1, 2, 4, 8]
    assert largest_within(x, [2.0 * v ** 2 for v in x], budget=200.0) == pytest.approx(10.0)
    assert math.isnan(largest_within(x, [5.0, 4.0, 3.0, 2.0], budget=200.0))  # falls: no size reaches the budget


def test_setup_at_sets_one_knob():
    base = TrlSetup()
    assert setup_at(base, "questions", 8).n_questions == 8
    assert setup_at(base, "group_size", 4).group_size == 4
    wide = setup_at(base, "width", 64)
    assert (wide.hidden, wide.intermediate, wide.layers) == (64, 128, base.layers)
    task, _, _ = bench_task(setup_at(base, "completion_len", 6))
    assert task.max_new_tokens == 6  # at most 5 digits then <eos>
    assert all(len(v) >= 4 for v in AXES.values())
    with pytest.raises(ValueError, match="knob must be one of"):
        setup_at(base, "depth", 3)


def test_peak_memory_sees_an_allocation():
    memory = PeakMemory()
    if not memory.available:
        pytest.skip("no /proc/self/clear_refs here")
    with memory:
        x = torch.ones(25_000_000)  # 100 MB, touched
        del x
    assert 90e6 < memory.peak < 400e6


def test_bench_scaling_plumbing_at_tiny_sizes():
    """Plumbing: every point is measured and formatted; the numbers are not checked (timing)."""
    base = dataclasses.replace(TrlSetup(), n_questions=4, group_size=2, hidden=16, intermediate=32, warmup=0)
    points, threads, with_trl = bench_scaling(repeat=1, threads=1, axes={"questions": [2, 4], "width": [8, 16]},
                                              with_trl=False, base=base)
    assert [(p.knob, p.x) for p in points] == [("questions", 2), ("questions", 4), ("width", 8), ("width", 16)]
    assert all(p.ours_s > 0 and math.isnan(p.trl_s) for p in points) and threads == 1 and not with_trl
    text = format_scaling(points, threads, with_trl)
    assert "questions" in text and "width" in text and "ours b =" in text and "TRL not timed" in text


def test_time_split_counts_the_ops_it_ran():
    a, b = torch.randn(256, 256), torch.randn(256, 256)

    def iteration():
        c = a @ b          # one aten::mm
        return c.relu_()   # one more op, not a matmul

    split = time_split(iteration, repeat=3)
    assert split.ops >= 2 and split.matmul_s > 0 and split.other_kernel_s > 0
    assert split.matmul_s + split.other_kernel_s <= split.wall_s


def test_format_split_arithmetic():
    split = TimeSplit(wall_s=0.010, matmul_s=0.004, other_kernel_s=0.003, ops=100)
    assert split.overhead_s == pytest.approx(0.003)
    lines = format_split(split, flops=2e8, peak=1e11)  # 2e8 FLOP in 4 ms = 50 GFLOP/s = 50% of 100
    text = "\n".join(lines)
    assert "50.0 GFLOP/s inside them = 50% of the matmul peak" in text
    assert "30.0 us per op outside kernels" in text and "(40.0%)" in text


def test_width_by_parameters_fills_the_budget_with_the_training_state():
    w = width_by_parameters(24e9, layers=2, vocab=16)
    params = 2 * (4 * w * w + 3 * w * 2 * w) + 2 * 16 * w
    assert STATE_COPIES * 4 * params == pytest.approx(24e9)
    assert 6_000 < w < 8_000
