"""Rule ``train``: GRPO iterations from pi_ref for one (policy, run); per-iteration states and metrics.

    python -m grpo_amp.stages.train policy=tabular_sgd variant=mean_std_ref grpo.group_size=32 scale=smoke

Writes results/{scale}/train/{policy}/{run}/: iter_001 ... iter_N (policy states), metrics.csv,
timing.csv (wall seconds per iteration, apart so that metrics.csv is the same bytes run to run),
c1.csv (C1's sampled surrogate) and run.json (the config and the MLflow run id), atomically.
"""

from __future__ import annotations

import logging

import pandas as pd

from grpo_amp import paths, tracking
from grpo_amp.config import Config, flatten
from grpo_amp.io import atomic_path, write_csv, write_json
from grpo_amp.policies import load_policy, load_task
from grpo_amp.schema import POS_COLUMNS
from grpo_amp.stages.common import device_for, stage_main

log = logging.getLogger(__name__)


def run(cfg: Config) -> None:
    import torch

    from grpo_amp.grpo.trainer import train
    from grpo_amp.pos import PosMeter

    family = cfg.policy.family
    ref_dir = paths.path(paths.REFERENCE, cfg)
    task = load_task(family, ref_dir)
    device = device_for(cfg)
    ref = load_policy(family, ref_dir, task, device=device)
    ref.requires_grad_(False)
    policy = load_policy(family, ref_dir, task, device=device)  # pi_0 = pi_ref
    params = flatten(cfg)
    uri, run_name = cfg.tracking.uri, cfg.run_name or cfg.variant.name
    live = cfg.tracking.enabled and cfg.tracking.live
    run_id = tracking.start_run(uri, cfg.scale.name, cfg.policy.name.value, run_name, params) if live else None

    out = paths.path(paths.TRAIN, cfg)
    measured = []  # with checkpoints off, PoS is measured here, per iteration (the pos rule reads it)
    if not cfg.policy.save_checkpoints:
        meter = PosMeter(ref, task, cfg.policy.pos_method.value, cfg.policy.mc_samples, cfg.seed)
        measured.append(meter(ref, iteration=0))
    with atomic_path(out, directory=True) as tmp:
        def save_iteration(n, pi):
            if cfg.policy.save_checkpoints:
                pi.save(paths.iteration_dir(tmp, n))
            else:
                measured.append(meter(pi, iteration=n))

        def log_metrics(n, metrics):
            if run_id is not None:
                tracking.log_metric_rows(uri, run_id, [{k: v for k, v in metrics.items()}])

        torch.manual_seed(cfg.seed)
        history = train(policy, ref, task, cfg, save_iteration=save_iteration, log_metrics=log_metrics)
        if not cfg.policy.save_checkpoints:
            policy.save(paths.iteration_dir(tmp, cfg.grpo.iterations))  # the final policy is always kept
            write_csv(pd.concat(measured, ignore_index=True)[POS_COLUMNS], tmp / paths.POS_MEASURED_IN_TRAINING)
        write_csv(history.metrics_frame(), tmp / "metrics.csv")
        write_csv(history.timing_frame(), tmp / "timing.csv")
        write_csv(history.c1_frame(), tmp / "c1.csv")
        write_json({"config": params, "mlflow_run_id": run_id, "tracking_uri": uri}, tmp / "run.json")
    if run_id is not None:
        tracking.log_artifacts(uri, run_id, [out / "metrics.csv", out / "c1.csv"], subdir="train")
    log.info("trained %s/%s: %d iterations into %s", cfg.policy.name.value, run_name, cfg.grpo.iterations, out)


if __name__ == "__main__":
    stage_main(run)
