"""The tabular task: Q questions, each with K possible outputs of which a fixed subset is correct.

The theory-exact control lives here: with a finite output set, PoS, KL and C2's optimum are all
exact sums. A question's correct set is drawn once (seeded) and saved in ``questions.csv``.

    task = TabularTask.generate(cfg.task)      # TaskConfig with name=tabular
    task.save("results/default/reference/tabular")
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from grpo_amp.config import TaskConfig
from grpo_amp.io import InputError, read_csv, read_json, write_csv, write_json
from grpo_amp.grpo.rollout import Rollout
from grpo_amp.tasks.base import Task


class TabularTask(Task):
    def __init__(self, questions: pd.DataFrame, n_outputs: int):
        self.questions = questions
        self.n_outputs = n_outputs
        correct = np.zeros((len(questions), n_outputs), dtype=bool)
        for i, answers in enumerate(questions["answers"].astype(str)):
            correct[i, [int(a) for a in answers.split("|")]] = True
        self.correct = torch.as_tensor(correct)  # (N, K) the verifier, as a lookup table

    @classmethod
    def generate(cls, cfg: TaskConfig) -> "TabularTask":
        rng = np.random.default_rng(cfg.seed)
        n, k = cfg.n_train + cfg.n_heldout, cfg.n_outputs
        rows = []
        for q in range(n):
            # at least one correct and one wrong output, so p_ref can sit strictly inside (0, 1)
            n_correct = int(rng.integers(1, k // 2 + 1))
            answers = np.sort(rng.choice(k, size=n_correct, replace=False))
            rows.append({"question": q, "split": "train" if q < cfg.n_train else "heldout",
                         "prompt": f"q{q}", "answers": "|".join(map(str, answers))})
        return cls(pd.DataFrame(rows).set_index("question", drop=False), k)

    def replicate(self, n: int) -> "TabularTask":
        """``n`` stacked copies of the questions (ids 0 .. n*N-1; copy s holds rows s*N .. (s+1)*N-1).

        Tabular questions share no parameters, so ``n`` seeds of a run train as one table of n*N
        questions in one process: the seeds are a dimension, not n processes.
        """
        rows = pd.concat([self.questions] * n, ignore_index=True)
        rows["question"] = np.arange(len(rows))
        return TabularTask(rows.set_index("question", drop=False), self.n_outputs)

    def reward(self, rollout: Rollout) -> torch.Tensor:
        correct = self.correct[rollout.questions]  # (Q, K)
        return torch.gather(correct, 1, rollout.tokens[..., 0]).to(torch.float64)  # (Q, G)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        write_csv(self.questions, directory / "questions.csv")
        write_json({"name": "tabular", "n_outputs": self.n_outputs}, directory / "task.json")

    @classmethod
    def load(cls, directory: str | Path) -> "TabularTask":
        directory = Path(directory)
        meta = read_json(directory / "task.json")
        questions = read_csv(directory / "questions.csv", ["question", "split", "prompt", "answers"])
        if meta.get("name") != "tabular" or "n_outputs" not in meta:
            raise InputError(f"{directory / 'task.json'} does not describe a tabular task")
        # the verifier is a table indexed by position: ids must be 0..n-1 in order
        if not questions["question"].tolist() == list(range(len(questions))):
            raise InputError(f"corrupt {directory / 'questions.csv'}: question ids must be 0..n-1 in order")
        return cls(questions.set_index("question", drop=False), int(meta["n_outputs"]))
