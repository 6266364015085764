"""A small tabular setup for the rung tests (test_rungs, test_factorial): pi_old != pi_ref inside
every correct set, a variant builder, one update applied, and C3's step from the exact PoS."""

from __future__ import annotations

import numpy as np
import torch

from grpo_amp import theory
from grpo_amp.config import Config, GRPOConfig, KLTarget, Norm, Std, TaskConfig, VariantConfig
from grpo_amp.grpo.pos import pos_exact
from grpo_amp.policies.tabular import make_reference

def _variant(kl, norm, eps, beta=0.8, beta_prev=0.6, std="population"):
    return VariantConfig(name="t", kl=KLTarget(kl), norm=Norm(norm), eps=eps, beta=beta,
                         beta_prev=beta_prev if kl == "both" else 0.0, std=Std(std))


def _setup(seed=0, n=12, k=6, **grpo):
    tc = TaskConfig(n_train=n, n_heldout=0, n_outputs=k, seed=seed, p_ref_low=0.05, p_ref_high=0.9)
    task, ref = make_reference(tc)
    ref.requires_grad_(False)
    # pi_old != pi_ref, also inside each set: so kl=both's result depends on both anchors
    old = ref.frozen_copy()
    with torch.no_grad():
        old.logits += torch.as_tensor(np.random.default_rng(seed + 7).normal(0, 0.7, size=old.logits.shape))
    return tc, task, ref, old, task.split_ids("train"), grpo


def _apply(fn, variant, seed=0, generator_seed=0, **grpo):
    tc, task, ref, old, qs, _ = _setup(seed)
    cfg = Config(variant=variant, task=tc, grpo=GRPOConfig(**grpo))
    pi = old.frozen_copy().requires_grad_(True)
    metrics = fn(pi, old, ref, task, qs, cfg, torch.Generator().manual_seed(generator_seed))
    return pi, old, ref, task, qs, metrics


def _c3(old, ref, qs, v, group_size=None):
    return theory.pos_step(pos_exact(old, qs)[0], pos_exact(ref, qs)[0], kl=v.kl.value, beta=v.beta,
                           beta_prev=v.beta_prev, norm=v.norm.value, eps=v.eps, group_size=group_size, std=v.std.value)
