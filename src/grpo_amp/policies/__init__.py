"""Policies by family: ``load_reference`` reads what the ``reference`` rule wrote, as (task, pi_ref).

    task, ref = load_reference("tabular", "results/smoke/reference/tabular")
    task, ref = load_reference("transformer", ref_dir, device="cuda", temperature=cfg.policy.temperature)

One loader per family (``LOADERS``, keyed by ``registry.FAMILIES``). The transformer family's reference
directory holds one of two tasks, named by its task.json: modarith (our Llama, ``TransformerPolicy``,
which samples at temperature 1: its own pi) or a file task (any local HF causal LM, ``HFPolicy``,
sampled at ``temperature``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from grpo_amp.io import InputError, read_json


def load_reference(family: str, directory: str | Path, device: str = "cpu", temperature: float = 1.0):
    """(task, policy) of the reference directory of ``family``; the policy is pi_ref, trainable."""
    if family not in LOADERS:
        raise InputError(f"unknown policy family {family!r} (choose from {', '.join(LOADERS)})")
    if not Path(directory).is_dir():
        raise InputError(f"missing reference directory: {directory} (run the `reference` rule first)")
    return LOADERS[family](Path(directory), device, temperature)


def _tabular(directory: Path, device: str, temperature: float):
    from grpo_amp.policies.tabular import TabularPolicy
    from grpo_amp.tasks.tabular import TabularTask

    task = TabularTask.load(directory)
    return task, TabularPolicy.load(directory, task)  # float64 on the CPU, sampled exactly


def task_kind(directory: str | Path) -> str:
    """"file" or "modarith": what a transformer reference directory's task.json says (InputError if missing).

    A FileTask writes ``{"task": "file", ...}``; a ModArithTask writes its TaskConfig as ``{"task": {...}}``.
    """
    meta = read_json(Path(directory) / "task.json")
    return "file" if meta.get("task") == "file" else "modarith"


def _transformer(directory: Path, device: str, temperature: float):
    if task_kind(directory) == "file":
        from grpo_amp.devices import resolve_device
        from grpo_amp.policies.hf import HFPolicy
        from grpo_amp.tasks.file_task import FileTask

        task = FileTask.load(directory)
        return task, HFPolicy.load(directory, task, device=resolve_device(device), temperature=temperature)
    from grpo_amp.policies.transformer import TransformerPolicy
    from grpo_amp.tasks.modarith import ModArithTask

    task = ModArithTask.load(directory)
    return task, TransformerPolicy.load(directory, task, device=device)  # samples at temperature 1 (its own pi)


LOADERS: dict[str, Callable] = {"tabular": _tabular, "transformer": _transformer}
