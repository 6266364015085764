"""Rule ``train``: GRPO iterations from pi_ref for one (policy, run), over its seeds, measuring PoS as it goes.

    python -m grpo_amp.stages.train policy=tabular_sgd variant=mean_std_ref grpo.group_size=32 scale=smoke

Writes (paths named by the rule, ``outputs.train`` and ``outputs.pos``; standalone, from results/):
  train/{policy}/{run}/  seed_SS/iter_NNN (policy states: every iteration with policy.save_checkpoints,
                         else the last), metrics.csv, timing.csv (wall seconds per iteration, apart so that
                         metrics.csv is the same bytes run to run), c1.csv (C1's sampled surrogate), run.json,
                         redraws.csv (dynamic sampling only: redraws and drops per question)
  pos/{policy}/{run}.csv PoS of every question at every iteration and seed (POS_COLUMNS)
A sampled policy repeats the run over ``scale.study.seeds`` seeds (cfg.seed, cfg.seed + 1, ...).
Tabular seeds train as one table of seeds x questions (they share no parameters); transformer seeds
train one after the other in this process (start-up, not arithmetic, is the cost at these sizes).
"""

from __future__ import annotations

import copy
import dataclasses
import logging

import pandas as pd

from grpo_amp import paths, registry
from grpo_amp.config import Config, flatten
from grpo_amp.io import atomic_path, write_csv, write_json
from grpo_amp.policies import load_policy, load_task
from grpo_amp.schema import C1_COLUMNS, E3_CONTROL_COLUMNS, POS_COLUMNS, REDRAWS_COLUMNS, TIMING_COLUMNS, TRAIN_METRICS_COLUMNS
from grpo_amp.stages.common import device_for, output_path, stage_main
from grpo_amp.study.runs import seeds_of
from grpo_amp.tracking import mlflow_store as tracking

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Trained:
    """What one training pass measured: PoS rows, metrics and C1 rows (``seed`` columns filled)."""
    pos: list[pd.DataFrame] = dataclasses.field(default_factory=list)
    metrics: list[pd.DataFrame] = dataclasses.field(default_factory=list)
    c1: list[pd.DataFrame] = dataclasses.field(default_factory=list)
    timing: list[pd.DataFrame] = dataclasses.field(default_factory=list)
    e3: list[dict] = dataclasses.field(default_factory=list)  # E3's tempering control per seed (e3_controls.csv)
    redraws: list[pd.DataFrame] = dataclasses.field(default_factory=list)  # dynamic sampling only


def _train_once(cfg: Config, policy, ref, task, meter, save_dir, log_metrics=None) -> Trained:
    """Iterations from ``policy`` = pi_ref; PoS of every question after each one (iteration 0 = pi_ref)."""
    from grpo_amp import registry

    loop = registry.resolve(cfg.policy.spec.loop)
    out = Trained(pos=[meter(ref, iteration=0)])

    def save_iteration(n, pi):
        out.pos.append(meter(pi, iteration=n))
        if cfg.policy.save_checkpoints or n == cfg.grpo.iterations:  # the final policy is always kept
            save_dir(n, pi)

    history = loop(policy, ref, task, cfg, save_iteration=save_iteration, log_metrics=log_metrics)
    out.metrics.append(history.metrics_frame())
    out.c1.append(history.c1_frame())
    out.timing.append(history.timing_frame())
    if history.redraws_frame() is not None:
        out.redraws.append(history.redraws_frame())
    return out


def _train_tabular(cfg: Config, n_seeds: int, ref_dir, tmp, log_metrics=None) -> Trained:
    """Every seed in one table: row s*N + q is question q of seed cfg.seed + s."""
    from grpo_amp.grpo.pos import PosMeter

    base = load_task(cfg.policy.family, ref_dir)
    n = len(base.questions)
    task = base.replicate(n_seeds)
    ref = load_policy(cfg.policy.family, ref_dir, base).replicate(n_seeds, task)
    ref.requires_grad_(False)
    policy = ref.replicate(1, task)
    policy.requires_grad_(True)
    meter = PosMeter(ref, task, cfg.policy.pos_method.value, cfg.policy.mc_samples, cfg.seed)

    def save_dir(it, pi):
        for s in range(n_seeds):
            pi.rows(s * n, (s + 1) * n, base).save(paths.iteration_dir(tmp, it, s))

    out = _train_once(cfg, policy, ref, task, meter, save_dir, log_metrics)
    # back from replicated rows to (seed, question); metrics are pooled over the seeds' rows
    for frame in (*out.pos, *out.c1, *out.redraws):
        frame["seed"] = cfg.seed + frame["question"] // n
        frame["question"] = frame["question"] % n
    for frame in (*out.metrics, *out.timing):
        frame["seed"] = cfg.seed if n_seeds == 1 else -1
    return out


def _train_each_seed(cfg: Config, n_seeds: int, ref_dir, tmp, device: str, log_metrics=None) -> Trained:
    """One training per seed, each from pi_ref, in this process."""
    from grpo_amp.grpo.pos import PosMeter

    family = cfg.policy.family
    task = load_task(family, ref_dir)
    options = {"temperature": cfg.policy.temperature}  # a file task's HF policy samples at it; ours at 1
    ref = load_policy(family, ref_dir, task, device=device, **options)
    ref.requires_grad_(False)
    out = Trained()
    for s in range(n_seeds):
        cfg_s = dataclasses.replace(cfg, seed=cfg.seed + s)
        policy = copy.deepcopy(ref).requires_grad_(True)  # pi_0 = pi_ref (as read from ref_dir, not read again)
        meter = PosMeter(ref, task, cfg.policy.pos_method.value, cfg.policy.mc_samples, cfg_s.seed)
        one = _train_once(cfg_s, policy, ref, task, meter, lambda it, pi: pi.save(paths.iteration_dir(tmp, it, s)),
                          log_metrics and (lambda it, m: log_metrics(it, _per_seed(m, cfg_s.seed))))
        for frame in (*one.pos, *one.metrics, *one.c1, *one.timing, *one.redraws):
            frame["seed"] = cfg_s.seed
        out.redraws += one.redraws
        if _has_e3_controls(cfg, task):
            from grpo_amp.grpo.e3_controls import tempered_reference

            out.e3.append({"seed": cfg_s.seed, **tempered_reference(ref, policy, task)})
        out.pos += one.pos
        out.metrics += one.metrics
        out.c1 += one.c1
        out.timing += one.timing
    return out


def _has_e3_controls(cfg: Config, task) -> bool:
    """E3's tempering control is measured for a policy some control run is a control of, on a listable modarith task."""
    from grpo_amp.tasks.modarith import ModArithTask

    name = cfg.policy.name.value
    return isinstance(task, ModArithTask) and any(s.control_of == name for s in registry.POLICY_TABLE)


def _per_seed(metrics: dict, seed: int) -> dict:
    """One MLflow series per seed: ``seed3/loss`` at step = iteration."""
    return {"iteration": metrics["iteration"], **{f"seed{seed}/{k}": v for k, v in metrics.items() if k != "iteration"}}


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
    ref_dir = paths.path(paths.REFERENCE, cfg)
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
        if cfg.policy.family in ("tabular", "twin"):  # tables: seeds as rows of one table
            trained = _train_tabular(cfg, n_seeds, ref_dir, tmp, log_metrics)
        else:
            trained = _train_each_seed(cfg, n_seeds, ref_dir, tmp, device_for(cfg), log_metrics)
        metrics = pd.concat(trained.metrics, ignore_index=True).reindex(columns=TRAIN_METRICS_COLUMNS)  # argmax_*: NaN off the exact rungs
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
    if run_id is not None:
        tracking.log_artifacts(uri, run_id, [train_out / "metrics.csv", train_out / "c1.csv"], subdir="train")
    log.info("trained %s/%s: %d iterations x %d seeds into %s", cfg.policy.name.value, run_name,
             cfg.grpo.iterations, n_seeds, train_out)


if __name__ == "__main__":
    stage_main(run)
