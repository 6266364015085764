"""The GRPO iteration loop, over any policy.

    history = train(policy, ref, task, cfg, update=grpo_update, save_iteration=lambda n, pi: pi.save(out / f"iter_{n:03d}"))

Per iteration n (docs/theory.md, Setting): freeze pi_{n-1}; run the policy's update (bound to its name in
``grpo.updates.LOOPS``: C2's closed form for tabular_exact, an E5 rung, sampled GRPO steps); measure C1's
sampled surrogate on fresh groups of pi_{n-1}; hand pi_n to ``save_iteration``. The trainer knows
nothing of the prediction: C1's closed form is put beside the measurement by ``compare``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch
from tqdm.auto import tqdm

from grpo_amp.config import Config
from grpo_amp.grpo.adam import Adam
from grpo_amp.grpo.loss import LossTerms, group_advantages, grpo_loss, sequence_sum, token_logp
from grpo_amp.policies.base import Policy
from grpo_amp.schema import IterationMetrics
from grpo_amp.tasks.base import Task


@dataclass
class History:
    """What training measured: per-iteration metrics and C1's per-question surrogate."""
    metrics: list[dict] = field(default_factory=list)
    c1: list[pd.DataFrame] = field(default_factory=list)

    def metrics_frame(self) -> pd.DataFrame:
        """Per-iteration metrics, without wall time (a data file: the same config gives the same bytes)."""
        return pd.DataFrame(self.metrics).drop(columns="seconds", errors="ignore")

    def timing_frame(self) -> pd.DataFrame:
        """Wall seconds per iteration (timing.csv): differs from run to run, so apart from the data."""
        return pd.DataFrame(self.metrics)[["iteration", "seconds"]]

    def c1_frame(self) -> pd.DataFrame:
        return pd.concat(self.c1, ignore_index=True)


# --------------------------------------------------------------------------- the two updates
def grpo_update(policy: Policy, old: Policy, ref: Policy, task: Task, questions: torch.Tensor,
                cfg: Config, generator: torch.Generator) -> IterationMetrics:
    """M inner optimiser steps on the sampled, group-normalised, KL-penalised objective.

    m = grpo.groups_per_question groups of G per question, the objective averaged over them,
    advantages per group of G: m = 1 is practice (E5's R6), m > 1 is E5's R4 (sampling error).
    With grpo.inner_tol set (the transformer control) the steps go on past M = grpo.inner_steps while
    the sampled objective improves by at least inner_tol per step (mean over the last STOP_WINDOW
    steps), up to grpo.max_inner_steps (``inner_steps_taken`` in the metrics says how many were taken).
    """
    v, g = cfg.variant, cfg.grpo
    m, G = g.groups_per_question, g.group_size
    rollout = old.sample(questions, m * G, generator)                   # (Q, m*G, T)
    rewards = task.reward(rollout)                                      # (Q, m*G)
    Q = rewards.shape[0]
    adv, zero_spread = group_advantages(rewards.reshape(Q * m, G), v.norm.value, v.eps, v.std.value)  # (Q*m, G)
    adv = adv.reshape(Q, m * G)
    with torch.no_grad():
        ref_logq = ref.log_softmax(rollout)                             # (Q, m*G, T, V)
        # with one inner step pi = pi_old at the only step: ratio = 1, skip the extra pass (as TRL does)
        old_logq = old.log_softmax(rollout) if g.inner_steps > 1 or g.inner_tol is not None else None
    optimiser = _optimiser(policy, cfg)
    stop = inner_stopping(g.inner_steps, g.inner_tol, g.max_inner_steps)
    taken = 0
    while True:
        logq = policy.log_softmax(rollout)
        terms: LossTerms = grpo_loss(logq, logq.detach() if old_logq is None else old_logq, ref_logq,
                                     rollout.tokens, rollout.mask, adv.to(logq.dtype), v, g)
        if stop(taken, float(terms.loss.detach())):
            break
        optimiser.zero_grad(set_to_none=True)
        terms.loss.backward()
        optimiser.step()
        taken += 1
        if g.inner_tol is None and taken == g.inner_steps:
            break  # practice: M steps; the loss reported is the one at the last step's start
    return IterationMetrics(loss=float(terms.loss.detach()), pg_objective=float(terms.pg_objective),
                            kl_ref=float(terms.kl_ref), kl_prev=float(terms.kl_prev), mean_reward=float(rewards.mean()),
                            zero_spread_frac=float(zero_spread.double().mean()), clip_frac=float(terms.clip_frac),
                            inner_steps_taken=taken)


STOP_WINDOW = 4  # inner_tol judges the loss's mean fall per step over this many steps: Adam's steps are not monotone


def inner_stopping(min_steps: int, tol: float | None, max_steps: int,
                   window: int = STOP_WINDOW) -> Callable[[int, float], bool]:
    """``stop(taken, loss)``: called with the loss at the current parameters after ``taken`` steps.

    tol None: never stops early (the caller runs exactly ``min_steps``). Otherwise: stop at
    ``max_steps``, or once at least ``min_steps`` (and ``window``) steps are taken and the loss fell
    by less than ``tol`` per step on average over the last ``window`` steps: the sampled objective
    stopped improving. One step up between steps down (Adam's oscillation) does not stop it.
    """
    losses: list[float] = []

    def stop(taken: int, loss: float) -> bool:
        if tol is None:
            return False
        losses.append(loss)
        if taken >= max_steps:
            return True
        if taken < max(min_steps, window):
            return False
        return (losses[-1 - window] - losses[-1]) / window < tol
    return stop


def exact_update(policy: Policy, old: Policy, ref: Policy, task: Task, questions: torch.Tensor,
                 cfg: Config, generator: torch.Generator) -> IterationMetrics:
    """C2's closed-form optimum (tabular policies only): no sampling, no optimiser."""
    policy.set_exact_optimum(old, ref, questions, cfg.variant)
    return IterationMetrics.undefined()


Update = Callable[..., IterationMetrics]  # (policy, old, ref, task, questions, cfg, generator) -> the iteration's

def _optimiser(policy: Policy, cfg: Config) -> Adam:
    """A fresh Adam per iteration, or (reset_optimizer=false) one kept on the policy, moments and all."""
    params = [p for p in policy.parameters() if p.requires_grad]
    if cfg.grpo.reset_optimizer:
        return _adam(params, cfg.grpo.lr)
    if getattr(policy, "_grpo_optimiser", None) is None:
        policy._grpo_optimiser = _adam(params, cfg.grpo.lr)  # lives and dies with the policy
    return policy._grpo_optimiser


def _adam(params: list[torch.Tensor], lr: float) -> Adam:
    return Adam(params, lr=lr)  # torch.optim.Adam's update without torch.optim's 1 s import (grpo.adam)


# --------------------------------------------------------------------------- C1 measurement
@torch.no_grad()
def sampled_surrogate(policy: Policy, old: Policy, task: Task, questions: torch.Tensor, cfg: Config,
                      generator: torch.Generator) -> pd.DataFrame:
    """C1's left side, E_{o~pi_{n-1}}[pi_n(o)/pi_{n-1}(o) * A], on fresh groups, per question.

    ``cfg.grpo.c1_groups`` independent groups of G per question; the advantages are the trainer's
    own (finite G), so the closed form to compare with is E1's w+_G p_n - w-_G (1 - p_n).
    """
    v, g = cfg.variant, cfg.grpo
    per_group = []
    for _ in range(g.c1_groups):
        rollout = old.sample(questions, g.group_size, generator)           # (Q, G, T)
        adv, _ = group_advantages(task.reward(rollout), v.norm.value, v.eps, v.std.value)  # (Q, G)
        mask = rollout.mask.to(torch.float64)
        log_ratio = sequence_sum(token_logp(policy.log_softmax(rollout), rollout.tokens).double()
                                 - token_logp(old.log_softmax(rollout), rollout.tokens).double(), mask)
        per_group.append((torch.exp(log_ratio) * adv.double()).mean(dim=1))  # (Q,)
    stacked = torch.stack(per_group)  # (c1_groups, Q)
    se = stacked.std(dim=0, unbiased=True) / stacked.shape[0] ** 0.5 if stacked.shape[0] > 1 \
        else torch.full_like(stacked[0], float("nan"))
    rows = {"question": questions.cpu().numpy(), "surrogate": stacked.mean(0).cpu().numpy(),
            "surrogate_se": se.cpu().numpy(), "n_groups": stacked.shape[0]}
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the loop
def train(policy: Policy, ref: Policy, task: Task, cfg: Config, *, update: Update,
          save_iteration: Callable[[int, Policy], None] | None = None,
          log_metrics: Callable[[int, dict], None] | None = None) -> History:
    """Run ``cfg.grpo.iterations`` GRPO iterations from ``policy`` (= pi_ref at the start).

    ``update`` is one iteration's step (``grpo.updates.LOOPS`` binds each policy's).
    """
    torch.manual_seed(cfg.seed)
    generator = torch.Generator(device=_device_of(policy)).manual_seed(cfg.seed)
    questions = task.split_ids("train").to(_device_of(policy))
    history = History()
    bar = tqdm(range(1, cfg.grpo.iterations + 1), desc=f"{cfg.policy.name.value}/{cfg.run_name or cfg.variant.name}",
               unit="iter", mininterval=1.0)
    for n in bar:
        start = time.perf_counter()
        old = policy.frozen_copy()  # pi_{n-1}: frozen for the whole iteration
        reported = update(policy, old, ref, task, questions, cfg, generator)
        c1 = sampled_surrogate(policy, old, task, questions, cfg, generator)
        metrics = {"iteration": n, **asdict(reported), "seconds": time.perf_counter() - start}
        history.metrics.append(metrics)
        history.c1.append(c1.assign(iteration=n))
        if save_iteration is not None:
            save_iteration(n, policy)
        if log_metrics is not None:
            log_metrics(n, metrics)
        bar.set_postfix(reward=f"{metrics['mean_reward']:.3f}")
    return history


def _device_of(policy: Policy) -> torch.device:
    return next(policy.parameters()).device
