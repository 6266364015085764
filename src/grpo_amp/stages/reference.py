"""Rule ``reference``: build the task and pi_ref, and save both (safetensors + questions.csv).

    python -m grpo_amp.stages.reference policy=tabular_exact scale=smoke
    python -m grpo_amp.stages.reference policy=transformer scale=smoke   # trains the LM from scratch
    python -m grpo_amp.stages.reference policy=transformer scale=smoke task=file \
        task.path=/data/q.jsonl policy.checkpoint=/models/m              # copies the user's model: no training

Written to results/{scale}/reference/{family}/ atomically: a killed run leaves no directory behind.
Task draw k >= 1 (``task.draw=k``, issue 20) goes to reference/{family}-draw{k}/ and is made with the task seed
and the seed moved by ``config.draw_seed`` (another split, label-noise rates or p_ref table, and another pi_ref);
the twin of draw k reads the transformer's reference of draw k.
With ``policy.checkpoint`` the directory holds a copy of that model (safetensors, re-saved) and
``checkpoint.json``: where it came from and the SHA-256 of every file read there.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from grpo_amp import paths
from grpo_amp.config import OPEN_ENDED_TASKS, Config, draw_seed
from grpo_amp.io import atomic_path, sha256, write_json
from grpo_amp.stages.common import device_for, output_path, stage_main

log = logging.getLogger(__name__)


def _tabular(cfg: Config):
    from grpo_amp.policies.tabular import make_reference

    return make_reference(cfg.task)


def _transformer(cfg: Config):
    from grpo_amp.policies.reference_training import train_reference
    from grpo_amp.tasks.modarith import ModArithTask

    if cfg.task.name in OPEN_ENDED_TASKS:  # any local HF causal LM answers open-ended questions with its own tokenizer
        from grpo_amp.policies.lm.checkpoint import load_causal_lm
        from grpo_amp.policies.hf import HFPolicy

        model, tokenizer = load_causal_lm(cfg.policy.checkpoint, device=device_for(cfg))
        from grpo_amp.tasks.file_task import open_ended_task

        task = open_ended_task(cfg.task, tokenizer)
        return task, HFPolicy(task, model, temperature=cfg.policy.temperature, device=device_for(cfg))
    task = ModArithTask.generate(cfg.task)
    if cfg.policy.checkpoint:  # a local HF causal LM is pi_ref: nothing trained, nothing downloaded
        from grpo_amp.policies.transformer import reference_from_checkpoint

        return task, reference_from_checkpoint(task, cfg.policy.checkpoint, device=device_for(cfg))
    return task, train_reference(task, cfg.policy.model, cfg.policy.reference, seed=cfg.seed, device=device_for(cfg))


def _provenance(checkpoint: str) -> dict:
    """Where pi_ref came from: the directory and the SHA-256 of each file in it (weights included)."""
    source = Path(checkpoint).expanduser().resolve()
    return {"source": str(source), "sha256": {f.name: sha256(f) for f in sorted(source.iterdir()) if f.is_file()}}


def _twin(cfg: Config):
    """The transformer's tabular twin: its pi_ref over every answer-shaped output (and "other"), as a table.

    Reads the transformer's reference directory (``inputs.reference``, else the scale's standard one of the same
    task draw and task: the one the workflow names, common.smk ``twin_source``).
    """
    import torch

    from grpo_amp.grpo.lm_rungs import AnswerSpace
    from grpo_amp.policies.tabular import TabularPolicy
    from grpo_amp.policies.transformer import TransformerPolicy
    from grpo_amp.stages.common import input_path
    from grpo_amp.tasks.modarith import ModArithTask
    from grpo_amp.tasks.tabular import TabularTask

    source = input_path(cfg, "reference", paths.REFERENCE.replace(
        "{family}", paths.reference_name("transformer", cfg.task.draw, cfg.task.plus_sign)))
    lm_task = ModArithTask.load(source)
    lm_ref = TransformerPolicy.load(source, lm_task, device="cpu")
    space = AnswerSpace(lm_task)
    questions = torch.arange(len(lm_task.questions))
    with torch.no_grad():
        logp = space.log_probs(lm_ref, questions)                       # (N, K + 1): pi_ref, "other" last
    correct = space.correct(questions)
    table = lm_task.questions[["question", "split", "prompt"]].copy()
    table["answers"] = ["|".join(map(str, torch.nonzero(row)[:, 0].tolist())) for row in correct]
    task = TabularTask(table, space.K + 1)
    return task, TabularPolicy(task, logp)


BUILDERS = {"tabular": _tabular, "transformer": _transformer, "twin": _twin}


def for_draw(cfg: Config) -> Config:
    """``cfg`` with the seeds of its task draw (config.draw_seed): the task's and pi_ref's training seed.
    Draw 0 is ``cfg`` itself."""
    k = cfg.task.draw
    if k == 0:
        return cfg
    return dataclasses.replace(cfg, seed=draw_seed(cfg.seed, k), task=dataclasses.replace(cfg.task, seed=draw_seed(cfg.task.seed, k)))


def run(cfg: Config) -> None:
    import torch

    cfg = for_draw(cfg)
    torch.manual_seed(cfg.seed)
    out = output_path(cfg, "reference", paths.REFERENCE)  # the rule names it (reference/{family}[-draw{k}])
    task, ref = BUILDERS[cfg.policy.family](cfg)
    with atomic_path(out, directory=True) as tmp:
        task.save(tmp)
        ref.save(tmp)
        if cfg.policy.checkpoint:
            write_json(_provenance(cfg.policy.checkpoint), tmp / "checkpoint.json")
    log.info("pi_ref for %s written to %s (%d questions)", cfg.policy.family, out, len(task.questions))


if __name__ == "__main__":
    stage_main(run)
