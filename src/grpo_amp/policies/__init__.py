"""Policies by family: ``load_reference`` reads what the ``reference`` rule wrote, as (task, pi_ref).

    task, ref = load_reference("tabular", "results/smoke/reference/tabular")
    task, ref = load_reference("transformer", ref_dir, device="cuda", temperature=cfg.policy.temperature)

One loader per family (``LOADERS``, keyed by ``registry.FAMILIES``). The transformer family's reference
directory holds one of three tasks, named by its task.json: modarith (our Llama, ``TransformerPolicy``,
which samples at temperature 1: its own pi), a file task or a reasoning-gym task (any local HF causal LM,
``HFPolicy``, sampled at ``temperature``). ``load_lm_task`` / ``load_lm_policy`` are its two halves
(the audit reads checkpoints of a task it built itself).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from grpo_amp.io import InputError, read_json


def load_reference(family: str, directory: str | Path, device: str = "cpu", temperature: float = 1.0):
    """(task, policy) of the reference directory of ``family``; the policy is pi_ref, trainable."""
    if family not in LOADERS:
        raise InputError(f"unknown policy family {family!r} (choose from {', '.join(LOADERS)})")
    require_reference(directory)
    return LOADERS[family](Path(directory), device, temperature)


def require_reference(directory: str | Path) -> None:
    """InputError (one line) unless the reference rule's directory exists."""
    if not Path(directory).is_dir():
        raise InputError(f"missing reference directory: {directory} (run the `reference` rule first)")


def _tabular(directory: Path, device: str, temperature: float):
    from grpo_amp.policies.tabular import TabularPolicy
    from grpo_amp.tasks.tabular import TabularTask

    task = TabularTask.load(directory)
    return task, TabularPolicy.load(directory, task)  # float64 on the CPU, sampled exactly


def task_kind(directory: str | Path) -> str:
    """"file", "reasoning_gym" or "modarith": what a transformer reference directory's task.json says
    (InputError if missing). A FileTask (or ReasoningGymTask) writes ``{"task": "file" | "reasoning_gym", ...}``;
    a ModArithTask writes its TaskConfig as ``{"task": {...}}``.
    """
    meta = read_json(Path(directory) / "task.json")
    return meta["task"] if meta.get("task") in ("file", "reasoning_gym") else "modarith"


def load_lm_task(directory: str | Path):
    """The transformer family's task saved in ``directory``: a ModArithTask, FileTask or ReasoningGymTask."""
    kind = task_kind(directory)
    if kind == "reasoning_gym":
        from grpo_amp.tasks.reasoning_gym_task import ReasoningGymTask

        return ReasoningGymTask.load(directory)
    if kind == "file":
        from grpo_amp.tasks.file_task import FileTask

        return FileTask.load(directory)
    from grpo_amp.tasks.modarith import ModArithTask

    return ModArithTask.load(directory)


def load_lm_policy(directory: str | Path, task, device: str = "cpu", temperature: float = 1.0):
    """The causal LM saved in ``directory`` for ``task``: any HF model on an open-ended task (a FileTask or
    ReasoningGymTask: sampled at ``temperature``), our Llama on modarith (temperature 1: its own pi)."""
    from grpo_amp.tasks.file_task import FileTask

    if isinstance(task, FileTask):
        from grpo_amp.devices import resolve_device
        from grpo_amp.policies.hf import HFPolicy

        return HFPolicy.load(directory, task, device=resolve_device(device), temperature=temperature)
    from grpo_amp.policies.transformer import TransformerPolicy

    return TransformerPolicy.load(directory, task, device=device)


def _transformer(directory: Path, device: str, temperature: float):
    task = load_lm_task(directory)
    return task, load_lm_policy(directory, task, device=device, temperature=temperature)


# the twin is a table like the tabular family's (its reference rule builds it from the transformer's pi_ref)
LOADERS: dict[str, Callable] = {"tabular": _tabular, "twin": _tabular, "transformer": _transformer}
