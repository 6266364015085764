"""Policies by family: ``load_task`` and ``load_policy`` read what the ``reference`` rule wrote."""

from __future__ import annotations

from pathlib import Path

from grpo_amp.io import InputError


def _families():
    # imported lazily: the transformer family pulls in transformers, which tabular runs never need
    from grpo_amp.policies.tabular import TabularPolicy
    from grpo_amp.tasks.tabular import TabularTask

    families = {"tabular": (TabularTask, TabularPolicy)}
    try:
        from grpo_amp.policies.transformer import TransformerPolicy
        from grpo_amp.tasks.modarith import ModArithTask
    except ImportError:  # pragma: no cover - only while the transformer family is absent
        return families
    families["transformer"] = (ModArithTask, TransformerPolicy)
    return families


def load_task(family: str, directory: str | Path):
    if not Path(directory).is_dir():
        raise InputError(f"missing reference directory: {directory} (run the `reference` rule first)")
    return _families()[family][0].load(directory)


def load_policy(family: str, directory: str | Path, task, device: str = "cpu"):
    if not Path(directory).is_dir():
        raise InputError(f"missing policy checkpoint directory: {directory}")
    cls = _families()[family][1]
    if family == "tabular":
        return cls.load(directory, task)
    return cls.load(directory, task, device=device)
