"""Tabular softmax policies: one logit per (question, output), pi(o|q) = softmax(logits[q])[o].

Two ways to run a GRPO iteration on them (config ``policy=``):
  tabular_exact  pi_n = C2's closed-form optimum (theory.tabular_optimum): theory in the loop,
                 the pipeline's own proof that measurement, prediction and comparison agree;
  tabular_sgd    the generic GRPO trainer (sampled groups, ratio, KL estimator, Adam steps).

float64 throughout: the exact control must match C3 to 1e-9.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from grpo_amp import theory
from grpo_amp.config import TaskConfig, VariantConfig
from grpo_amp.io import InputError, atomic_path
from grpo_amp.policies.base import Policy
from grpo_amp.grpo.rollout import Rollout
from grpo_amp.tasks.tabular import TabularTask

WEIGHTS = "policy.safetensors"


class TabularPolicy(Policy):
    def __init__(self, task: TabularTask, logits: torch.Tensor):
        super().__init__()
        if logits.shape != task.correct.shape:
            raise InputError(f"tabular logits have shape {tuple(logits.shape)}, the task needs {tuple(task.correct.shape)}")
        self.task = task
        self.logits = torch.nn.Parameter(logits.to(torch.float64).clone())  # (N, K)

    # -- sampling and log-probs -------------------------------------------------------------
    def sample(self, questions: torch.Tensor, group_size: int, generator: torch.Generator) -> Rollout:
        with torch.no_grad():
            probs = torch.softmax(self.logits[questions], dim=-1)  # (Q, K)
            outputs = torch.multinomial(probs, group_size, replacement=True, generator=generator)  # (Q, G)
        tokens = outputs[..., None]  # (Q, G, 1): an output is a one-token sequence
        return Rollout(questions, tokens, torch.ones_like(tokens, dtype=torch.bool))

    def log_softmax(self, rollout: Rollout) -> torch.Tensor:
        logq = torch.log_softmax(self.logits[rollout.questions], dim=-1)  # (Q, K)
        q, g = rollout.tokens.shape[:2]
        return logq[:, None, None, :].expand(q, g, 1, logq.shape[-1])  # (Q, G, 1, K)

    def answer_log_probs(self, questions: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logq = torch.log_softmax(self.logits[questions], dim=-1)  # (Q, K)
            return logq.masked_fill(~self.task.correct[questions], -torch.inf)  # (Q, A = K)

    def probs(self) -> np.ndarray:
        return torch.softmax(self.logits.detach(), dim=-1).numpy()  # (N, K)

    # -- C2: the closed-form iteration ----------------------------------------------------------
    def set_exact_optimum(self, old: "TabularPolicy", ref: "TabularPolicy", questions: torch.Tensor,
                          variant: VariantConfig) -> None:
        """pi_n = argmax E_pi[A] - KL penalties, in closed form (C2), for the given questions."""
        idx = questions.numpy()
        pi_n = theory.tabular_optimum(
            old.probs()[idx], ref.probs()[idx], self.task.correct.numpy()[idx], **variant.theory_kwargs())
        with torch.no_grad(), np.errstate(divide="ignore"):
            self.logits[questions] = torch.as_tensor(np.log(pi_n))

    def replicate(self, n: int, task: TabularTask) -> "TabularPolicy":
        """``n`` stacked copies of the table, for ``task.replicate(n)``: seeds as rows of one table."""
        return TabularPolicy(task, self.logits.detach().repeat(n, 1))

    def rows(self, start: int, stop: int, task: TabularTask) -> "TabularPolicy":
        """The table of questions ``start:stop`` (one seed's block of a replicated table)."""
        return TabularPolicy(task, self.logits.detach()[start:stop])

    # -- files -------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / WEIGHTS) as tmp:
            save_file({"logits": self.logits.detach().contiguous()}, str(tmp))

    @classmethod
    def load(cls, directory: str | Path, task: TabularTask, device: str = "cpu") -> "TabularPolicy":
        """``device`` is accepted for the common interface; a table always lives on the CPU in float64."""
        path = Path(directory) / WEIGHTS
        if not path.is_file():
            raise InputError(f"missing tabular policy file: {path}")
        try:
            logits = load_file(str(path))["logits"]
        except (SafetensorError, KeyError, OSError, ValueError) as exc:
            raise InputError(f"corrupt tabular policy file {path}: {exc}") from None
        return cls(task, logits)


def make_reference(cfg: TaskConfig) -> tuple[TabularTask, TabularPolicy]:
    """The task and pi_ref, with p_ref spread over [p_ref_low, p_ref_high] by construction."""
    task = TabularTask.generate(cfg)
    rng = np.random.default_rng(cfg.seed + 1)
    correct = task.correct.numpy()
    logits = rng.normal(size=correct.shape)  # (N, K): pi_ref's preferences inside each set
    target = rng.uniform(cfg.p_ref_low, cfg.p_ref_high, size=len(correct))
    # shift the correct outputs' logits so the correct mass is exactly the target p_ref
    lse = lambda m: np.log(np.where(m, np.exp(logits), 0.0).sum(1))  # noqa: E731
    shift = theory.logit(target) - lse(correct) + lse(~correct)
    logits = logits + np.where(correct, shift[:, None], 0.0)
    return task, TabularPolicy(task, torch.as_tensor(logits))
