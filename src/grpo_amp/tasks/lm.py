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
    """"file" or "modarith": what the reference directory's task.json says (InputError if it is missing)."""
    meta = read_json(Path(directory) / "task.json")
    return "file" if meta.get("task") == "file" else "modarith"


class LMTask:
    """Not a task: the loader the registry names for the transformer family."""

    @classmethod
    def load(cls, directory: str | Path):
        if task_kind(directory) == "file":
            from grpo_amp.tasks.file_task import FileTask

            return FileTask.load(directory)
        from grpo_amp.tasks.modarith import ModArithTask

        return ModArithTask.load(directory)
