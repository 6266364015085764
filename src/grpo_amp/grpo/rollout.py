"""The sampled-completions record passed between policies, tasks and the GRPO loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Rollout:
    """G sampled completions per question: ``tokens`` and ``mask`` are (Q, G, T); mask marks real tokens.

    The tabular policy is the case T = 1, the token being the index of the output.
    """
    questions: torch.Tensor  # (Q,) long: ids into the task's question table
    tokens: torch.Tensor     # (Q, G, T) long
    mask: torch.Tensor       # (Q, G, T) bool

    @property
    def group_size(self) -> int:
        return self.tokens.shape[1]
