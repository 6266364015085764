"""pi_ref for the transformer family: a model trained from scratch on the task's noisy labels.

    ref = train_reference(task, cfg.policy.model, cfg.policy.reference, seed=0, device="cpu")

Each question has its own label-noise rate (``ModArithTask``), so the p_ref this training reaches
spreads by construction rather than by early stopping.
"""

from __future__ import annotations

import sys

import torch
from tqdm import tqdm

from grpo_amp.config import ModelConfig, ReferenceTrainingConfig
from grpo_amp.policies.transformer import TransformerPolicy
from grpo_amp.tasks.modarith import ModArithTask


def train_reference(task: ModArithTask, model_cfg: ModelConfig, ref_cfg: ReferenceTrainingConfig, seed: int,
                    device: str | torch.device = "auto") -> TransformerPolicy:
    """pi_ref: AdamW on cross-entropy of labelled completions drawn from all splits; seeded init and batches."""
    policy = TransformerPolicy.from_config(task, model_cfg, seed=seed, device=device)
    policy.train()
    data_rng = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=ref_cfg.lr, weight_decay=ref_cfg.weight_decay)
    progress = tqdm(range(ref_cfg.steps), desc="pi_ref", file=sys.stderr, mininterval=1.0)
    for step in progress:
        loss = policy.reference_loss(*task.reference_batch(ref_cfg.batch_size, data_rng))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == ref_cfg.steps - 1:
            progress.set_postfix(loss=f"{loss.item():.3f}")
    policy.eval()
    return policy
