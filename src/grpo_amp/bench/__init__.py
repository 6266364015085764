"""Benchmarks behind ``grpo-amp bench <name>``: one table, name -> function.

    grpo-amp bench theory --repeat 5
    grpo-amp bench trl --repeat 20 --threads 2
    grpo-amp bench scaling --repeat 3 --threads 1

A benchmark is a function ``(repeat, threads) -> text`` (the report the CLI prints); a new one is
a module, a two-line function below that imports it, and an entry in :data:`BENCHMARKS`. Each
function imports its module when called, so that
``grpo-amp bench theory`` (and every other command, which builds the parser from this table)
never pays for transformers or TRL.

    theory  the closed-form theory at the sizes a sweep needs, medians against goals (bench.theory)
    trl     one GRPO iteration of ours against TRL's GRPOTrainer at equal work (grpo_amp.trl_family.bench)
    audit   auditing 5 checkpoints of the smoke model, and how it grows with model, questions, samples (bench.audit)
    scaling how that iteration's time and memory grow with questions, G, completion length, width (bench.scaling)
"""

from __future__ import annotations

from collections.abc import Callable


def _theory(repeat: int, threads: int | None) -> str:
    from grpo_amp.bench.theory import report

    return report(repeat, threads)


def _trl(repeat: int, threads: int | None) -> str:
    from grpo_amp.trl_family.bench import report  # imports transformers and TRL

    return report(repeat, threads)


def _audit(repeat: int, threads: int | None) -> str:
    from grpo_amp.bench.audit import report

    return report(repeat, threads)


def _scaling(repeat: int, threads: int | None) -> str:
    from grpo_amp.bench.scaling import report  # its runs import transformers and TRL

    return report(repeat, threads)


BENCHMARKS: dict[str, Callable[[int, int | None], str]] = {
    "theory": _theory, "trl": _trl, "audit": _audit, "scaling": _scaling,
}


def benchmark(name: str) -> Callable[[int, int | None], str]:
    """The function registered as ``name``; ValueError naming the choices if there is none."""
    if name not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {', '.join(BENCHMARKS)}; got {name!r}")
    return BENCHMARKS[name]


def check_repeat(repeat) -> int:
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an integer >= 1; got {repeat!r}")
    return repeat


def run_benchmark(name: str, repeat: int = 5, threads: int | None = None) -> str:
    """Run the benchmark registered as ``name``: its report. A bad name or repeat raises ValueError naming it."""
    if name in BENCHMARKS:  # a bad repeat fails before the benchmark's module is imported
        check_repeat(repeat)
    return benchmark(name)(repeat, threads)
