"""Rule ``reference``: build the task and pi_ref, and save both (safetensors + questions.csv).

    python -m grpo_amp.stages.reference policy=tabular_exact scale=smoke
    python -m grpo_amp.stages.reference policy=transformer scale=smoke   # trains the LM from scratch

Written to results/{scale}/reference/{family}/ atomically: a killed run leaves no directory behind.
"""

from __future__ import annotations

import logging

from grpo_amp import paths
from grpo_amp.config import Config
from grpo_amp.io import atomic_path
from grpo_amp.stages.common import device_for, stage_main

log = logging.getLogger(__name__)


def _tabular(cfg: Config):
    from grpo_amp.policies.tabular import make_reference

    return make_reference(cfg.task)


def _transformer(cfg: Config):
    from grpo_amp.policies.reference_training import train_reference
    from grpo_amp.tasks.modarith import ModArithTask

    task = ModArithTask.generate(cfg.task)
    if cfg.policy.checkpoint:  # a local HF causal LM is pi_ref: nothing trained, nothing downloaded
        from grpo_amp.policies.checkpoint import reference_from_checkpoint

        return task, reference_from_checkpoint(task, cfg.policy.checkpoint, device=device_for(cfg))
    return task, train_reference(task, cfg.policy.model, cfg.policy.reference, seed=cfg.seed, device=device_for(cfg))


BUILDERS = {"tabular": _tabular, "transformer": _transformer}


def run(cfg: Config) -> None:
    import torch

    torch.manual_seed(cfg.seed)
    out = paths.path(paths.REFERENCE, cfg)
    task, ref = BUILDERS[cfg.policy.family](cfg)
    with atomic_path(out, directory=True) as tmp:
        task.save(tmp)
        ref.save(tmp)
    log.info("pi_ref for %s written to %s (%d questions)", cfg.policy.family, out, len(task.questions))


if __name__ == "__main__":
    stage_main(run)
