"""The transformer family's tasks: which one a reference directory holds, read from its task.json.

    task = LMTask.load("results/smoke/reference/transformer")   # a ModArithTask or a FileTask

``registry.FAMILIES["transformer"].task_class`` names this loader: one family (one reference
directory, the same `reference` rule), two tasks. A FileTask writes ``{"task": "file", ...}``; a
ModArithTask writes its TaskConfig as ``{"task": {...}}``.
"""

from __future__ import annotations

from pathlib import Path

from grpo_amp.io import read_json


def task_kind(directory: str | Path) -> str:
    """"file", "reasoning_gym" or "modarith": what the reference directory's task.json says (InputError if missing)."""
    meta = read_json(Path(directory) / "task.json")
    return meta["task"] if meta.get("task") in ("file", "reasoning_gym") else "modarith"


class LMTask:
    """Not a task: the loader the registry names for the transformer family."""

    @classmethod
    def load(cls, directory: str | Path):
        kind = task_kind(directory)
        if kind == "reasoning_gym":
            from grpo_amp.tasks.reasoning_gym_task import ReasoningGymTask

            return ReasoningGymTask.load(directory)
        if kind == "file":
            from grpo_amp.tasks.file_task import FileTask

            return FileTask.load(directory)
        from grpo_amp.tasks.modarith import ModArithTask

        return ModArithTask.load(directory)


def open_ended_task(task_cfg, tokenizer):
    """task=file (questions from a file) or task=reasoning_gym (generated offline), for the model's tokenizer."""
    if task_cfg.name == "reasoning_gym":
        from grpo_amp.tasks.reasoning_gym_task import ReasoningGymTask

        return ReasoningGymTask.from_config(task_cfg, tokenizer)
    from grpo_amp.tasks.file_task import FileTask

    return FileTask.from_config(task_cfg, tokenizer)
