"""``parallel_map``: a list of independent jobs over the cores a rule was granted, results in order.

    from grpo_amp.parallel import parallel_map
    rows = parallel_map(summarise, runs, study, workers=cfg.workers)   # = [summarise(study, r) for r in runs]

The compare and figures rules run last, when every other job is done and their second core would idle; their
work is a list of independent items (a run's summary, a policy's claim rows, a figure). Each item is computed
in a forked process exactly as it would be alone, so the results, and the files written from them, do not
depend on ``workers`` (tests/test_parallel.py). ``fn`` must be a module-level function (it is sent by name);
``shared`` (what every item reads: the study, the runs read) reaches the workers through the fork, unpickled.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence

_SHARED = None  # parallel_map's ``shared``, inherited by its forked workers


def _call(job: tuple):
    fn, item = job
    return fn(_SHARED, item)


def parallel_map(fn: Callable, items: Sequence, shared=None, workers: int = 1) -> list:
    """[fn(shared, x) for x in items], over min(workers, len(items)) forked processes where that is more than one."""
    global _SHARED
    items = list(items)
    workers = min(int(workers), len(items))
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(shared, x) for x in items]
    _SHARED = shared
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return pool.map(_call, [(fn, x) for x in items], chunksize=1)
    finally:
        _SHARED = None
