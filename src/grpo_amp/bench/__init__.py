"""Benchmarks behind ``grpo-amp bench <name>``: one registry, name -> "module:function".

    grpo-amp bench theory --repeat 5
    grpo-amp bench trl --repeat 20 --threads 2
    grpo-amp bench scaling --repeat 3 --threads 1

A benchmark is a function ``(repeat, threads) -> text`` (the report the CLI prints); a new one is
a module and an entry in :data:`BENCHMARKS`. Entries are imported on first use, so that
``grpo-amp bench theory`` (and every other command, which builds the parser from this table)
never pays for transformers or TRL.

    theory  the closed-form theory at the sizes a sweep needs, medians against goals (bench.theory)
    trl     one GRPO iteration of ours against TRL's GRPOTrainer at equal work (grpo_amp.trl_family.bench)
    audit   auditing 5 checkpoints of the smoke model, and how it grows with model, questions, samples (bench.audit)
    scaling how that iteration's time and memory grow with questions, G, completion length, width (bench.scaling)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

BENCHMARKS: dict[str, str] = {
    "theory": "grpo_amp.bench.theory:report",
    "trl": "grpo_amp.trl_family.bench:report",
    "audit": "grpo_amp.bench.audit:report",
    "scaling": "grpo_amp.bench.scaling:report",
}


def benchmark(name: str) -> Callable[[int, int | None], str]:
    """The function registered as ``name``; ValueError naming the choices if there is none."""
    if name not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {', '.join(BENCHMARKS)}; got {name!r}")
    module, func = BENCHMARKS[name].split(":")
    return getattr(importlib.import_module(module), func)


def check_repeat(repeat) -> int:
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an integer >= 1; got {repeat!r}")
    return repeat


def run_benchmark(name: str, repeat: int = 5, threads: int | None = None) -> str:
    """Run the benchmark registered as ``name``: its report. A bad name or repeat raises ValueError naming it."""
    if name in BENCHMARKS:  # a bad repeat fails before the benchmark's module is imported
        check_repeat(repeat)
    return benchmark(name)(repeat, threads)
