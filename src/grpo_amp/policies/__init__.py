"""Policies by family: ``load_task`` and ``load_policy`` read what the ``reference`` rule wrote."""

from __future__ import annotations

from pathlib import Path

from grpo_amp import registry
from grpo_amp.io import InputError


def _family(family: str) -> registry.FamilySpec:
    if family not in registry.FAMILIES:
        raise InputError(f"unknown policy family {family!r} (choose from {', '.join(registry.FAMILIES)})")
    return registry.FAMILIES[family]


def load_task(family: str, directory: str | Path):
    if not Path(directory).is_dir():
        raise InputError(f"missing reference directory: {directory} (run the `reference` rule first)")
    return registry.resolve(_family(family).task_class).load(directory)


def load_policy(family: str, directory: str | Path, task, device: str = "cpu", **options):
    """``options`` go to the family's loader (the transformer family takes ``temperature``)."""
    if not Path(directory).is_dir():
        raise InputError(f"missing policy checkpoint directory: {directory}")
    return registry.resolve(_family(family).policy_class).load(directory, task, device=device, **options)
