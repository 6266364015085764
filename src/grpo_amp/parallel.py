"""``parallel_map``: a list of independent jobs over the cores a rule was granted, results in order.

    from grpo_amp.parallel import parallel_map
    rows = parallel_map(summarise, runs, workers=cfg.workers)   # = [summarise(r) for r in runs] when workers <= 1

The compare and figures rules run last, when every other job is done and their second core would idle; their
work is a list of independent items (a run's summary, a policy's claim rows, a figure). Each item is computed
in a forked process exactly as it would be alone, so the results, and the files written from them, do not
depend on ``workers`` (tests/test_parallel.py). ``fn`` must be a module-level function (it is sent by name);
what it reads beyond its item is inherited from the parent by the fork.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence


def parallel_map(fn: Callable, items: Sequence, workers: int = 1) -> list:
    """[fn(x) for x in items], over min(workers, len(items)) forked processes where that is more than one."""
    items = list(items)
    workers = min(int(workers), len(items))
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(x) for x in items]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(fn, items, chunksize=1)
