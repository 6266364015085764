"""Questions generated offline by reasoning-gym (pinned 0.1.25), with a binary reward.

    task = ReasoningGymTask.from_config(cfg.task, tokenizer)   # task=reasoning_gym task.dataset=basic_arithmetic
    rewards = task.reward(rollout)                               # (Q, G) in {0, 1}

``reasoning_gym.create_dataset(dataset, size=size, seed=seed)`` makes the questions (procedurally: no
download, no network). Its scorers give partial credit (0.01 for a wrong but well-formed answer in
some datasets); the theory's reward is binary, so r = 1 only where ``score_answer(...) == 1.0``.
The completion, stripped, is the answer. Saved as task.json (dataset, size, seed) plus questions.csv;
loading regenerates the entries (the scorers need their metadata) and checks they are the same questions.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from grpo_amp.io import InputError, one_line, read_csv, read_json, write_csv, write_json
from grpo_amp.tasks.base import load_tokenizer
from grpo_amp.tasks.file_task import COLUMNS, FileTask

PINNED = "0.1.25"


def _reasoning_gym():
    try:
        import reasoning_gym
    except ImportError:
        raise InputError(f"task=reasoning_gym needs reasoning-gym=={PINNED}: pip install -e . "
                         f"(or pip install reasoning-gym=={PINNED})") from None
    return reasoning_gym


def dataset_names() -> list[str]:
    from reasoning_gym.factory import DATASETS

    _reasoning_gym()
    return sorted(DATASETS)


def generate(dataset: str, size: int, seed: int):
    """reasoning-gym's dataset object; InputError (one line) for an unknown name or a failing generator."""
    rg = _reasoning_gym()
    names = dataset_names()
    if dataset not in names:
        raise InputError(f"task.dataset={dataset!r} is not a reasoning-gym {PINNED} dataset "
                         f"({len(names)} of them, e.g. {', '.join(names[:8])}, ...)")
    try:
        return rg.create_dataset(dataset, size=int(size), seed=int(seed))
    except Exception as exc:  # a generator that needs a file or fails on these settings
        raise InputError(f"task.dataset={dataset!r}: reasoning-gym could not generate it: {one_line(exc)}") from None


class ReasoningGymTask(FileTask):
    """A FileTask whose verifier is the dataset's own scorer, thresholded at 1.0 (binary reward)."""

    def __init__(self, data, dataset: str, size: int, seed: int, tokenizer, max_new_tokens: int = 16):
        self.data, self.dataset, self.size, self.seed = data, dataset, int(size), int(seed)
        self.entries = [data[i] for i in range(len(data))]
        questions = pd.DataFrame({"question": range(len(self.entries)), "split": "train",
                                  "prompt": [str(e["question"]) for e in self.entries],
                                  "answers": [str(e["answer"]) for e in self.entries]}, columns=COLUMNS)
        super().__init__(questions.set_index("question", drop=False), tokenizer, verifier="exact",
                         max_new_tokens=max_new_tokens, source=f"reasoning_gym:{dataset}")
        self.verifier_name = "reasoning_gym"

    @classmethod
    def from_config(cls, task_cfg, tokenizer) -> "ReasoningGymTask":
        data = generate(task_cfg.dataset, task_cfg.size, task_cfg.seed)
        return cls(data, task_cfg.dataset, task_cfg.size, task_cfg.seed, tokenizer, task_cfg.max_new_tokens)

    def score(self, completion: str, question: int) -> float:
        """1.0 only where reasoning-gym's scorer gives full credit: its partial credit is not the theory's r."""
        return float(self.data.score_answer(answer=completion.strip(), entry=self.entries[question]) == 1.0)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_csv(self.questions[COLUMNS], directory / "questions.csv")
        write_json({"task": "reasoning_gym", "dataset": self.dataset, "size": self.size, "seed": self.seed,
                    "version": PINNED, "max_new_tokens": self.max_new_tokens}, directory / "task.json")
        self.tokenizer.save_pretrained(directory)

    @classmethod
    def load(cls, directory: str | Path) -> "ReasoningGymTask":
        directory = Path(directory)
        meta = read_json(directory / "task.json")
        if meta.get("task") != "reasoning_gym" or not {"dataset", "size", "seed", "max_new_tokens"} <= set(meta):
            raise InputError(f"corrupt task file {directory / 'task.json'}: not a reasoning_gym task's")
        task = cls(generate(meta["dataset"], meta["size"], meta["seed"]), meta["dataset"], meta["size"], meta["seed"],
                   load_tokenizer(directory), meta["max_new_tokens"])
        saved = read_csv(directory / "questions.csv", COLUMNS)
        if saved["prompt"].astype(str).tolist() != task.questions["prompt"].tolist():
            raise InputError(f"{directory / 'questions.csv'}: reasoning-gym regenerated other questions than these "
                             f"(another reasoning-gym version than {PINNED}?)")
        return task
