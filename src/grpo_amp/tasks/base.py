"""A verifiable task: questions, their correct answers and the reward r(q, o) in {0, 1}."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import pandas as pd
import torch

from grpo_amp.io import InputError, one_line
from grpo_amp.grpo.rollout import Rollout


class Task(ABC):
    """Questions (ids 0..n-1, split "train" or "heldout") and a verifier.

    ``questions`` is the table written as ``questions.csv``: question, split, prompt, answers
    (the correct answers joined by "|").
    """

    questions: pd.DataFrame
    # every correct answer can be listed (exact PoS by teacher forcing); False: open-ended, Monte Carlo only
    answers_listable: bool = True

    def split_ids(self, split: str) -> torch.Tensor:
        return torch.as_tensor(self.questions.index[self.questions["split"] == split].to_numpy().copy(), dtype=torch.long)

    @abstractmethod
    def reward(self, rollout: Rollout) -> torch.Tensor:
        """r(q, o) in {0., 1.} for each sampled output: (Q, G) float."""

    @abstractmethod
    def save(self, directory: str | Path) -> None:
        """Write the task (questions.csv and what the verifier needs) into ``directory``."""


def load_tokenizer(directory: Path):
    """The tokenizer a task saved in ``directory``; InputError (one line) naming it if unreadable."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except Exception as exc:  # tokenizers raises its own exception types for a bad file
        raise InputError(f"corrupt tokenizer in {directory}: {one_line(exc)}") from None
