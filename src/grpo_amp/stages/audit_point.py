"""Rule ``audit_point``: Monte Carlo PoS of every question under one checkpoint of an audited run.

    python -m grpo_amp.stages.audit_point audit.base=/models/base 'audit.checkpoints=[/runs/out]' \
        policy=transformer task=file task.path=/data/q.jsonl inputs.train=/runs/out/checkpoint-50 \
        outputs.pos=results/audit-<digest>/points/step-00000050.csv

``inputs.train`` is the checkpoint (or the base) to measure: it must be one of the audit's points,
checked against the base (architecture, tokenizer, safetensors) before anything is sampled.
"""

from __future__ import annotations

import logging
from pathlib import Path

from grpo_amp.audit.checkpoints import check_point, check_weights, find_points
from grpo_amp.audit.measure import measure_point
from grpo_amp.config import Config
from grpo_amp.io import InputError, write_csv
from grpo_amp.stages.common import stage_main

log = logging.getLogger(__name__)


def run(cfg: Config) -> None:
    import torch

    if not cfg.inputs.train or not cfg.outputs.pos:
        raise InputError("audit_point needs inputs.train (the checkpoint) and outputs.pos (its PoS file)")
    points = find_points(cfg.audit.base, cfg.audit.checkpoints)
    wanted = Path(cfg.inputs.train).expanduser().resolve()
    index = next((i for i, p in enumerate(points) if p.path.resolve() == wanted), None)
    if index is None:
        raise InputError(f"inputs.train={cfg.inputs.train} is neither the audit base nor one of audit.checkpoints")
    point = points[index]
    if index == 0:
        check_weights(point.path, f"audit base {point.path}")
    else:
        check_point(point, points[0])
    torch.manual_seed(cfg.seed)
    rows = measure_point(cfg, point, index)
    write_csv(rows, cfg.outputs.pos)
    log.info("step %d: mean PoS %.4f over %d questions -> %s", point.step, rows["pos"].mean(), len(rows),
             cfg.outputs.pos)


if __name__ == "__main__":
    stage_main(run)
