"""Policies by family: ``load_task`` and ``load_policy`` read what the ``reference`` rule wrote."""

from __future__ import annotations

import importlib
from pathlib import Path

from grpo_amp.io import InputError

# family -> (task class, policy class), imported on first use: tabular runs never pay for transformers
FAMILIES = {
    "tabular": ("grpo_amp.tasks.tabular:TabularTask", "grpo_amp.policies.tabular:TabularPolicy"),
    "transformer": ("grpo_amp.tasks.modarith:ModArithTask", "grpo_amp.policies.transformer:TransformerPolicy"),
}


def _resolve(family: str, which: int):
    if family not in FAMILIES:
        raise InputError(f"unknown policy family {family!r} (choose from {', '.join(FAMILIES)})")
    module, name = FAMILIES[family][which].split(":")
    return getattr(importlib.import_module(module), name)


def load_task(family: str, directory: str | Path):
    if not Path(directory).is_dir():
        raise InputError(f"missing reference directory: {directory} (run the `reference` rule first)")
    return _resolve(family, 0).load(directory)


def load_policy(family: str, directory: str | Path, task, device: str = "cpu"):
    if not Path(directory).is_dir():
        raise InputError(f"missing policy checkpoint directory: {directory}")
    cls = _resolve(family, 1)
    if family == "tabular":
        return cls.load(directory, task)
    return cls.load(directory, task, device=device)
