"""The one small interface every policy implements (tabular and transformer alike).

A policy answers questions (integer ids into its task's question table). Outputs are token
sequences; the tabular policy is the special case T = 1 with the output index as the token.

    rollout = policy.sample(questions, group_size=8, generator=g)     # Rollout, (Q, G, T)
    logq = policy.log_softmax(rollout)                                 # (Q, G, T, V)
    ans = policy.answer_log_probs(questions)                           # (Q, A): log pi(a|q) per correct answer

Everything the GRPO loss needs (log-probs of the sampled tokens, the full-vocabulary per-token KL) is derived
from ``log_softmax`` in ``grpo.loss``; PoS and C2's within-correct KL from ``answer_log_probs``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import torch

from grpo_amp.grpo.rollout import Rollout


class Policy(torch.nn.Module, ABC):
    """pi(o|q) over a task's outputs. Subclasses are torch modules: parameters() is what trains."""

    @abstractmethod
    def sample(self, questions: torch.Tensor, group_size: int, generator: torch.Generator) -> Rollout:
        """Draw ``group_size`` outputs per question from the current policy (no gradient)."""

    @abstractmethod
    def log_softmax(self, rollout: Rollout) -> torch.Tensor:
        """Next-token log-probabilities at every completion position: (Q, G, T, V), with gradient."""

    @abstractmethod
    def answer_log_probs(self, questions: torch.Tensor) -> torch.Tensor:
        """log pi(a|q) of every correct answer a of each question, (Q, A), padded with -inf (no gradient)."""

    @abstractmethod
    def save(self, directory: str | Path) -> None:
        """Write the policy (safetensors only, never pickle) into ``directory``."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | Path, task) -> "Policy":
        """Read a policy that ``save`` wrote; a missing or corrupt file raises InputError naming it."""

    @torch.no_grad()
    def sample_groups(self, questions: torch.Tensor, n_groups: int, group_size: int,
                      generator: torch.Generator) -> Rollout:
        """``n_groups`` groups of ``group_size`` per question, drawn one group after another: (Q, n_groups*G, T).

        The same draws as ``n_groups`` calls of ``sample`` (generator state included); a policy may
        batch them (the transformer does) as long as that stays true.
        """
        groups = [self.sample(questions, group_size, generator) for _ in range(n_groups)]
        return Rollout(questions, torch.cat([r.tokens for r in groups], 1), torch.cat([r.mask for r in groups], 1))

    @torch.no_grad()
    def token_log_probs(self, rollout: Rollout) -> torch.Tensor:
        """log pi(o_t | q, o_<t) of the sampled tokens, (Q, G, T), no gradient: what a measurement needs."""
        return torch.gather(self.log_softmax(rollout), -1, rollout.tokens[..., None]).squeeze(-1)

    def frozen_copy(self) -> "Policy":
        """A detached, gradient-free copy: the old policy pi_{n-1} or pi_ref during an iteration."""
        import copy

        clone = copy.deepcopy(self)
        clone.requires_grad_(False)
        clone.eval()
        return clone
