"""E3's two controls: what a held-out gain would be without generalisation from the reward.

    update = shuffled_reward_update        # transformer_shuffled: GRPO with each question's rewards permuted
    row = tempered_reference(ref, final, task)   # pi_ref sharpened to GRPO's entropy drop on train questions

A held-out question can gain PoS because GRPO learned something that transfers, or merely because the
policy got sharper (lower entropy) and the held-out answer was already pi_ref's favourite. The two
controls give those explanations a number each:

- shuffled rewards: the same GRPO run with each question's rewards permuted among its sampled outputs,
  so the advantages carry no information about which output is right (a sharpening with no signal);
- tempering: pi_ref^(1/T) renormalised over the listed answer-shaped outputs (grpo.lm_rungs.AnswerSpace),
  with T chosen so that its mean sequence entropy on the train questions equals the trained policy's:
  the held-out PoS that sharpening alone, by the same amount, would give.

E3's effect is the held-out gain minus each control's (claims.claim_e3).
"""

from __future__ import annotations

import math

import torch

from grpo_amp.grpo.lm_rungs import AnswerSpace
from grpo_amp.grpo.trainer import grpo_update
from grpo_amp.schema import IterationMetrics


class _ShuffledRewards:
    """The task with its verifier's rewards permuted within each question's row (Q, n) on every call."""

    def __init__(self, task, generator: torch.Generator):
        self.task, self.generator = task, generator

    def reward(self, rollout):
        rewards = self.task.reward(rollout)                                            # (Q, n)
        keys = torch.rand(rewards.shape, generator=self.generator, device=self.generator.device)
        return rewards.gather(1, keys.argsort(1).to(rewards.device))                  # a permutation per row


def shuffled_reward_update(policy, old, ref, task, questions, cfg, generator) -> IterationMetrics:
    """grpo_update with each question's rewards shuffled among its m*G outputs (E3's no-signal control)."""
    return grpo_update(policy, old, ref, _ShuffledRewards(task, generator), questions, cfg, generator)


def _entropy(logp: torch.Tensor) -> torch.Tensor:
    return -(logp.exp() * logp).sum(-1)  # (Q,): 0 log 0 never arises (every listed mass is > 0)


@torch.no_grad()
def tempered_reference(ref, final, task) -> dict:
    """T with mean train entropy of pi_ref^(1/T) = the trained policy's, and the PoS it gives per split."""
    space = AnswerSpace(task)
    questions = torch.arange(len(task.questions))
    train = torch.as_tensor((task.questions["split"] == "train").to_numpy().copy())
    log_ref, log_n = space.log_probs(ref, questions), space.log_probs(final, questions)   # (N, K + 1)
    target = float(_entropy(log_n)[train].mean())

    def tempered(log_t: float) -> torch.Tensor:
        return torch.log_softmax(log_ref / torch.exp(torch.tensor(log_t, dtype=torch.float64)), -1)

    lo, hi = -6.0, 6.0  # log T; the mean entropy rises with T, so bisection finds the one match
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if float(_entropy(tempered(mid))[train].mean()) < target else (lo, mid)
    log_t = 0.5 * (lo + hi)
    correct = space.correct(questions)
    pos = lambda lp: (lp.exp() * correct).sum(-1)  # noqa: E731
    p_ref, p_t, p_n = pos(log_ref), pos(tempered(log_t)), pos(log_n)
    held = ~train
    return {"temperature": math.exp(log_t), "entropy_ref": float(_entropy(log_ref)[train].mean()),
            "entropy_n": target, "train_p_ref": float(p_ref[train].mean()), "train_p_tempered": float(p_t[train].mean()),
            "train_p_n": float(p_n[train].mean()), "heldout_p_ref": float(p_ref[held].mean()) if held.any() else float("nan"),
            "heldout_p_tempered": float(p_t[held].mean()) if held.any() else float("nan"),
            "heldout_p_n": float(p_n[held].mean()) if held.any() else float("nan")}
