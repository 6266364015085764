"""Probability of success, measured: exact where the correct outputs can be listed, else Monte Carlo.

    pos, kl_c = pos_exact(policy, questions, ref_answer_logp)     # (Q,), (Q,)
    pos, lo, hi = pos_mc(policy, task, questions, n_samples=256, generator=g)
    meter = PosMeter(ref, task, method="exact", n_samples=256, seed=0)
    table = meter(policy, iteration=3)                            # rows of the pos table (POS_COLUMNS)

exact: p(q) = sum over correct answers a of pi(a|q) (teacher forcing; ``answer_log_probs``).
mc:    the share of N sampled outputs that the verifier accepts, with a Wilson interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from grpo_amp.policies.base import Policy
from grpo_amp.tasks.base import Task

MC_SEED_OFFSET = 7919  # Monte Carlo PoS draws, seeded apart from training's


def kl_in_correct(answer_logp: torch.Tensor, ref_answer_logp: torch.Tensor) -> torch.Tensor:
    """C2's check: KL(pi restricted to the correct set || pi_ref restricted to it), both renormalised.

    answer_logp, ref_answer_logp: (Q, A) with -inf padding. 0 when pi_n is pi_ref tilted by r only.
    """
    log_pi = answer_logp - torch.logsumexp(answer_logp, dim=-1, keepdim=True)            # (Q, A)
    log_ref = ref_answer_logp - torch.logsumexp(ref_answer_logp, dim=-1, keepdim=True)  # (Q, A)
    terms = torch.where(torch.isfinite(log_pi), log_pi.exp() * (log_pi - log_ref), torch.zeros_like(log_pi))
    return terms.sum(dim=-1).clamp(min=0.0)


@torch.no_grad()
def pos_exact(policy: Policy, questions: torch.Tensor,
              ref_answer_logp: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact PoS per question and (given pi_ref's answer log-probs) C2's within-correct KL."""
    answer_logp = policy.answer_log_probs(questions).double()  # (Q, A)
    pos = torch.logsumexp(answer_logp, dim=-1).exp().clamp(0.0, 1.0)
    kl = kl_in_correct(answer_logp, ref_answer_logp.double()) if ref_answer_logp is not None \
        else torch.zeros_like(pos)
    return pos.cpu().numpy(), kl.cpu().numpy()


@torch.no_grad()
def pos_mc(policy: Policy, task: Task, questions: torch.Tensor, n_samples: int,
           generator: torch.Generator, chunk: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Monte Carlo PoS per question from ``n_samples`` outputs, with its Wilson interval."""
    successes = torch.zeros(len(questions), dtype=torch.float64, device=questions.device)
    done = 0
    while done < n_samples:  # in chunks, so a large N does not need Q x N outputs in memory at once
        g = min(chunk, n_samples - done)
        successes += task.reward(policy.sample(questions, g, generator)).double().sum(dim=1)
        done += g
    from grpo_amp.analysis.stats import wilson_interval  # here: scipy.stats costs a train job ~0.5 s to import

    k = successes.cpu().numpy()
    lo, hi = wilson_interval(k, n_samples)
    return k / n_samples, lo, hi


class PosMeter:
    """The pos table's rows for one policy at one iteration, against one pi_ref.

    The train stage builds one per seed (grpo.seeds) from the run's config: its Monte Carlo stream is
    seeded, so the same config gives the same numbers.
    """

    def __init__(self, ref: Policy, task: Task, method: str, n_samples: int, seed: int):
        device = next(ref.parameters()).device
        self.task, self.method, self.n_samples = task, method, n_samples
        self.questions = torch.arange(len(task.questions), device=device)
        self.generator = torch.Generator(device=device).manual_seed(seed + MC_SEED_OFFSET)
        # open-ended answers (a file task) cannot be listed: no exact PoS, no C2 within-correct KL
        self.listable = task.answers_listable
        if not self.listable and method != "mc":
            raise ValueError("a task whose answers cannot be listed needs Monte Carlo PoS (method='mc')")
        # C2: the within-correct KL's reference
        self.ref_answer_logp = ref.answer_log_probs(self.questions) if self.listable else None
        self.n_correct = torch.isfinite(self.ref_answer_logp).sum(-1).cpu().numpy() if self.listable \
            else np.full(len(self.questions), np.nan)  # (Q,): C2's row reports the correct sets' sizes

    def __call__(self, policy: Policy, iteration: int) -> pd.DataFrame:
        if self.listable:
            pos, kl_c = pos_exact(policy, self.questions, self.ref_answer_logp)
        else:
            pos, kl_c = np.full(len(self.questions), np.nan), np.full(len(self.questions), np.nan)
        lo = hi = pos
        if self.method == "mc":
            pos, lo, hi = pos_mc(policy, self.task, self.questions, self.n_samples, self.generator)
        return pd.DataFrame({"question": self.task.questions["question"].to_numpy(),
                             "split": self.task.questions["split"].to_numpy(), "iteration": iteration,
                             "pos": pos, "pos_lo": lo, "pos_hi": hi, "method": self.method, "kl_in_correct": kl_c,
                             "n_correct": self.n_correct})
