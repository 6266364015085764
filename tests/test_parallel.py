"""grpo_amp.parallel: work spread over forked processes gives what one process gives, in order, to the bit."""

from __future__ import annotations

import multiprocessing
import os

import pandas as pd
import pytest

from grpo_amp.analysis.claims import claims_table
from grpo_amp.parallel import parallel_map

import numpy as np

from helpers.claims import VARIANTS, Builder, _c3


def _square_and_pid(shared: tuple, x: int) -> tuple[int, int]:
    offset, both_started = shared
    if both_started is not None and x < 2:
        # items 0 and 1 wait for each other: one worker cannot take every item before the others start
        both_started.wait(timeout=60)
    return x * x + offset, os.getpid()


def test_parallel_map_keeps_the_order_and_really_uses_other_processes():
    serial = parallel_map(_square_and_pid, range(12), (5, None), workers=1)
    forked = parallel_map(_square_and_pid, range(12), (5, multiprocessing.get_context("fork").Barrier(2)), workers=3)
    assert [v for v, _ in forked] == [v for v, _ in serial] == [x * x + 5 for x in range(12)]
    assert {pid for _, pid in serial} == {os.getpid()}
    assert os.getpid() not in {pid for _, pid in forked} and len({pid for _, pid in forked}) > 1


def test_claims_table_is_the_same_over_two_processes():
    """Every policy's rows computed in a worker of their own: the same table, bit for bit, as in one process."""
    p_ref = np.linspace(0.1, 0.9, 20)
    b = Builder(p_ref)  # measured = C3 for two policies: rows of both, criteria first
    for policy in ("tabular_exact", "tabular_r1"):
        for name, v in VARIANTS.items():
            b.add(policy, name, v, "variant", _c3(p_ref, v))
    study = b.study()
    one, two = claims_table(study, workers=1), claims_table(study, workers=2)
    assert len(one) > 10 and one["policy"].nunique() > 1
    pd.testing.assert_frame_equal(one, two, check_exact=True)
