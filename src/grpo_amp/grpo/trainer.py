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
from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm.auto import tqdm

from grpo_amp.config import Config
from grpo_amp.grpo.adam import Adam
from grpo_amp.grpo.loss import LossTerms, group_advantages, grpo_loss, sequence_sum, token_logp
from grpo_amp.grpo.rollout import Rollout
from grpo_amp.policies.base import Policy
from grpo_amp.schema import IterationMetrics
from grpo_amp.tasks.base import Task


@dataclass
class History:
    """What training measured: per-iteration metrics and C1's per-question surrogate."""
    metrics: list[dict] = field(default_factory=list)
    c1: list[pd.DataFrame] = field(default_factory=list)
    # dynamic sampling (estimator dapo): per question and iteration, the redraws and whether it was dropped
    redraws: list[pd.DataFrame] = field(default_factory=list)

    def metrics_frame(self) -> pd.DataFrame:
        """Per-iteration metrics, without wall time (a data file: the same config gives the same bytes)."""
        return pd.DataFrame(self.metrics).drop(columns="seconds", errors="ignore")

    def timing_frame(self) -> pd.DataFrame:
        """Wall seconds per iteration (timing.csv): differs from run to run, so apart from the data."""
        return pd.DataFrame(self.metrics)[["iteration", "seconds"]]

    def c1_frame(self) -> pd.DataFrame:
        return pd.concat(self.c1, ignore_index=True)

    def redraws_frame(self) -> pd.DataFrame | None:
        return pd.concat(self.redraws, ignore_index=True) if self.redraws else None


# --------------------------------------------------------------------------- the two updates
def grpo_update(policy: Policy, old: Policy, ref: Policy, task: Task, questions: torch.Tensor,
                cfg: Config, generator: torch.Generator,
                advantages: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None) -> IterationMetrics:
    """M inner optimiser steps on the sampled, group-normalised, KL-penalised objective.

    m = grpo.groups_per_question groups of G per question, the objective averaged over them,
    advantages per group of G: m = 1 is practice (E5's R6), m > 1 is E5's R4 (sampling error).
    With grpo.inner_tol set (the transformer control) the steps go on past M = grpo.inner_steps while
    the sampled objective improves by at least inner_tol per step (mean over the last STOP_WINDOW
    steps), up to grpo.max_inner_steps (``inner_steps_taken`` in the metrics says how many were taken).
    """
    v, g, est = cfg.variant, cfg.grpo, cfg.advantage
    m, G = g.groups_per_question, g.group_size
    rollout = old.sample(questions, m * G, generator)                   # (Q, m*G, T)
    rewards = task.reward(rollout)                                      # (Q, m*G)
    Q = rewards.shape[0]
    redraw_info = None
    if est.dynamic_sampling:
        rollout, rewards, redraw_info = redraw_equal_groups(old, task, rollout, rewards, G, cfg.estimator.max_redraws,
                                                            generator)
    if advantages is None:
        adv, zero_spread = group_advantages(rewards.reshape(Q * m, G), **est.loss_kwargs())  # (Q*m, G)
    else:
        adv, zero_spread = advantages(rewards.reshape(Q * m, G))
    adv = adv.reshape(Q, m * G)
    if redraw_info is not None and redraw_info["dropped"].any():
        # DAPO drops what is still without spread after the cap: no advantage and no KL pull this iteration
        kept = ~redraw_info["dropped"]
        rollout = Rollout(rollout.questions[kept], rollout.tokens[kept], rollout.mask[kept])
        adv = adv[kept]
    if rollout.tokens.shape[0] == 0:  # every question dropped: nothing to optimise
        nan = float("nan")
        return IterationMetrics(loss=nan, pg_objective=nan, kl_ref=nan, kl_prev=nan, mean_reward=float(rewards.mean()),
                                zero_spread_frac=float(zero_spread.double().mean()), clip_frac=nan, inner_steps_taken=0,
                                redraws=_redraw_frame(questions, redraw_info))
    with torch.no_grad():
        ref_logq = ref.log_softmax(rollout)                             # (Q, m*G, T, V)
    optimiser = _optimiser(policy, cfg)
    stop = inner_stopping(g.inner_steps, g.inner_tol, g.max_inner_steps)
    taken, old_logq = 0, None
    while True:
        logq = policy.log_softmax(rollout)
        if old_logq is None:  # before the first step pi = pi_old, parameter for parameter: its pass is pi_old's
            old_logq = logq.detach()
        terms: LossTerms = grpo_loss(logq, old_logq, ref_logq, rollout.tokens, rollout.mask, adv.to(logq.dtype), v, g)
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
                            inner_steps_taken=taken,
                            redraws=None if redraw_info is None else _redraw_frame(questions, redraw_info))


def redraw_equal_groups(old: Policy, task: Task, rollout: Rollout, rewards: torch.Tensor, group_size: int,
                        max_redraws: int, generator: torch.Generator) -> tuple[Rollout, torch.Tensor, dict]:
    """DAPO's dynamic sampling (Yu et al. 2025): a group whose G rewards are all equal is drawn again
    from pi_old, at most ``max_redraws`` times (verl's max_num_gen_batches).

    rollout (Q, m*G, T), rewards (Q, m*G): m groups of G per question, each redrawn on its own. Returns
    the new rollout and rewards, and per question (Q,): ``redraws`` (groups drawn again, summed over its
    m groups; uncapped its mean is m (1/Z - 1), docs/theory.md E6) and ``dropped`` (every group of the
    question still without spread after the cap).
    """
    Q, mG = rewards.shape
    m = mG // group_size
    tokens, mask, rewards = rollout.tokens.clone(), rollout.mask.clone(), rewards.clone()
    redraws = torch.zeros(Q, dtype=torch.long, device=rewards.device)

    def equal_groups():
        r = rewards.reshape(Q, m, group_size)
        return (r == r[..., :1]).all(-1)                               # (Q, m)

    for _ in range(max_redraws):
        equal = equal_groups()
        if not equal.any():
            break
        q_idx, g_idx = torch.nonzero(equal, as_tuple=True)              # one redraw per equal group
        fresh = old.sample(rollout.questions[q_idx], group_size, generator)  # (n, G, T)
        fresh_rewards = task.reward(fresh).to(rewards.dtype)            # (n, G)
        cols = g_idx[:, None] * group_size + torch.arange(group_size, device=g_idx.device)  # (n, G)
        tokens[q_idx[:, None], cols] = fresh.tokens
        mask[q_idx[:, None], cols] = fresh.mask
        rewards[q_idx[:, None], cols] = fresh_rewards
        redraws.index_add_(0, q_idx.to(redraws.device), torch.ones_like(q_idx, device=redraws.device))
    dropped = equal_groups().all(-1)                                    # (Q,)
    return Rollout(rollout.questions, tokens, mask), rewards, {"redraws": redraws, "dropped": dropped}


def _redraw_frame(questions: torch.Tensor, info: dict) -> pd.DataFrame:
    return pd.DataFrame({"question": questions.cpu().numpy(), "redraws": info["redraws"].cpu().numpy(),
                         "dropped": info["dropped"].cpu().numpy().astype(int)})


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
    g = cfg.grpo
    c, G = g.c1_groups, g.group_size
    Q = len(questions)
    rollout = old.sample_groups(questions, c, G, generator)                # (Q, c*G, T): c groups, one after another
    # the estimator's advantage on unconditioned groups (no redraws): E[.] = w+_G p_n - w-_G (1 - p_n)
    # without dynamic sampling's 1/Z
    adv, _ = group_advantages(task.reward(rollout).reshape(Q * c, G), **cfg.advantage.loss_kwargs())  # (Q*c, G)
    mask = rollout.mask.to(torch.float64)
    log_ratio = sequence_sum(policy.token_log_probs(rollout).double() - old.token_log_probs(rollout).double(), mask)
    per_group = (torch.exp(log_ratio).reshape(Q * c, G) * adv.double()).mean(dim=1)  # (Q*c,)
    stacked = per_group.reshape(Q, c).t().contiguous()  # (c1_groups, Q), laid out as the groups were drawn
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
        if reported.redraws is not None:
            history.redraws.append(reported.redraws.assign(iteration=n))
        c1 = sampled_surrogate(policy, old, task, questions, cfg, generator)
        metrics = {"iteration": n, **reported.values(), "seconds": time.perf_counter() - start}
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
