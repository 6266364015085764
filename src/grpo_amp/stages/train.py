"""Rule ``train``: GRPO iterations from pi_ref for one (policy, run), over its seeds, measuring PoS as it goes.

    python -m grpo_amp.stages.train policy=tabular_sgd variant=mean_std_ref grpo.group_size=32 scale=smoke

Writes (paths named by the rule, ``outputs.train`` and ``outputs.pos``; standalone, from results/):
  train/{policy}/{run}/  seed_SS/iter_NNN (policy states: every iteration with policy.save_checkpoints,
                         else the last), metrics.csv, timing.csv (wall seconds per iteration, apart so that
                         metrics.csv is the same bytes run to run), c1.csv (C1's sampled surrogate), run.json,
                         redraws.csv (dynamic sampling only: redraws and drops per question)
  pos/{policy}/{run}.csv PoS of every question at every iteration and seed (POS_COLUMNS)
  predict/{policy}/{run}.csv, curves/{policy}/{run}.csv  C3 from that measured p_ref (``outputs.predict``,
                         ``outputs.curves``; grpo_amp.stages.predict, whose entry redoes them from a pos file)
A sampled policy repeats the run over ``scale.study.seeds`` seeds (cfg.seed, cfg.seed + 1, ...):
``grpo.seeds.train_seeds`` runs them, with the loop ``grpo.updates.LOOPS`` binds to the policy.
"""

from __future__ import annotations

import logging

import pandas as pd

from grpo_amp import paths
from grpo_amp.config import Config, flatten
from grpo_amp.io import atomic_path, write_csv, write_json
from grpo_amp.schema import C1_COLUMNS, E3_CONTROL_COLUMNS, POS_COLUMNS, REDRAWS_COLUMNS, TIMING_COLUMNS, TRAIN_METRICS_COLUMNS
from grpo_amp.grpo.seeds import train_seeds
from grpo_amp.stages.common import device_for, input_path, output_path, stage_main
from grpo_amp.stages.predict import write_predictions
from grpo_amp.study.runs import seeds_of
from grpo_amp.tracking import mlflow_store as tracking

log = logging.getLogger(__name__)


def _notes(cfg: Config) -> list[str]:
    """What a reader of this run's outputs must know: here, a sampling temperature other than 1."""
    from grpo_amp.policies.hf import temperature_note

    note = temperature_note(cfg.policy.temperature)
    if note is None or cfg.policy.family != "transformer":
        return []
    if cfg.task.name != "file" and cfg.policy.name.value != "trl":  # our Llama samples at 1 whatever is set
        return [f"policy.temperature={cfg.policy.temperature:g} is ignored: the transformer policy on modarith "
                "samples and measures at temperature 1"]
    return [note]


def run(cfg: Config) -> None:
    import torch

    n_seeds = seeds_of(cfg.scale.study, cfg.policy.name.value)
    ref_dir = input_path(cfg, "reference", paths.REFERENCE)  # the rule names it (reference_of: the run's task draw)
    params = {**flatten(cfg), "seeds": n_seeds}
    uri, run_name = cfg.tracking.uri, cfg.run_name or cfg.variant.name
    live = cfg.tracking.enabled and cfg.tracking.live
    run_id = tracking.start_run(uri, cfg.scale.name, cfg.policy.name.value, run_name, params) if live else None

    train_out = output_path(cfg, "train", paths.TRAIN)
    pos_out = output_path(cfg, "pos", paths.POS)
    # live: each iteration's metrics reach MLflow as it ends (step = iteration; one series per seed)
    log_metrics = (lambda n, m: tracking.log_metric_rows(uri, run_id, [m])) if run_id is not None else None
    notes = _notes(cfg)
    for note in notes:
        log.warning(note)
    torch.manual_seed(cfg.seed)
    with atomic_path(train_out, directory=True) as tmp:
        trained = train_seeds(cfg, n_seeds, ref_dir, tmp, device_for(cfg), log_metrics)
        metrics = pd.concat(trained.metrics, ignore_index=True)[TRAIN_METRICS_COLUMNS]
        write_csv(metrics, tmp / "metrics.csv")
        if trained.e3:
            write_csv(pd.DataFrame(trained.e3, columns=E3_CONTROL_COLUMNS), tmp / "e3_controls.csv")
        write_csv(pd.concat(trained.timing, ignore_index=True)[TIMING_COLUMNS], tmp / "timing.csv")
        write_csv(pd.concat(trained.c1, ignore_index=True)[C1_COLUMNS], tmp / "c1.csv")
        if trained.redraws:  # dynamic sampling (docs/theory.md E6): redraws per question, dropped questions
            write_csv(pd.concat(trained.redraws, ignore_index=True)[REDRAWS_COLUMNS]
                      .sort_values(["seed", "iteration", "question"]), tmp / "redraws.csv")
        write_json({"config": params, "mlflow_run_id": run_id, "tracking_uri": uri, "notes": notes}, tmp / "run.json")
        pos = pd.concat(trained.pos, ignore_index=True)[POS_COLUMNS].sort_values(["seed", "iteration", "question"])
        write_csv(pos, pos_out)  # inside the block: a failed run leaves neither output behind
        # C3 from this run's measured p_ref, in this process (stages.predict says why not a job of its own)
        write_predictions(cfg, pos, output_path(cfg, "predict", paths.PREDICT), output_path(cfg, "curves", paths.CURVES))
    if run_id is not None:
        tracking.log_artifacts(uri, run_id, [train_out / "metrics.csv", train_out / "c1.csv"], subdir="train")
    log.info("trained %s/%s: %d iterations x %d seeds into %s", cfg.policy.name.value, run_name,
             cfg.grpo.iterations, n_seeds, train_out)


if __name__ == "__main__":
    stage_main(run)
