"""Rule ``compare``: runs.csv, the claims table (claims.csv, claims.md), and the MLflow metrics.

    python -m grpo_amp.stages.compare scale=smoke \
        'inputs.run_names=[tabular_sgd/mean_std_ref, ...]' 'inputs.predict_files=[...]' 'inputs.train_dirs=[...]' \
        'inputs.pos_files=[...]' 'inputs.draw_run_names=[...]' 'inputs.draw_predict_files=[...]' outputs.runs=... ...

Reads only the files its rule names (the lists above, in the same order: ``RunFiles``): every run's
predict CSV, train metrics, C1 table and run.json; it rebuilds no run list and no path. Writes
``outputs.study_run`` (study_run.json: the study's MLflow run id, null without tracking, for the
figures rule) beside the tables below. Writes ``outputs.runs``, ``outputs.claims_csv``, ``outputs.claims_md`` and
``outputs.ladder`` (E5's gap ladder), ``outputs.factorial`` and ``outputs.attribution`` (the same
rungs as a 2 x 2 x 2 factorial and its parts, grpo_amp.analysis.factorial) and ``outputs.iterations`` (iterations.csv: per run and
iteration, E_q |p_n - C3| and the mean PoS) and ``outputs.draws`` (draws.csv: the draw policies' numbers over
task draws, grpo_amp.analysis.draws; the draw runs enter nothing else). Logs per-iteration PoS (mean, quantiles) and prediction
errors to each run, and the claims table and ladder to the scale's study run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from grpo_amp import paths, registry
from grpo_amp.analysis.claims import Study, claims_markdown, claims_table
from grpo_amp.analysis.draws import draws_table
from grpo_amp.analysis.ladder import ladder_table
from grpo_amp.analysis.summaries import summarise_run
from grpo_amp.config import Config, RuleFiles
from grpo_amp.io import InputError, read_csv, read_json, write_csv, write_json, write_text
from grpo_amp.analysis.factorial import attribution_table, factorial_table
from grpo_amp.schema import (C1_COLUMNS, E3_CONTROL_COLUMNS, ITERATION_COLUMNS, PREDICT_COLUMNS, REDRAWS_COLUMNS, RUN_COLUMNS,
                             TIMING_COLUMNS, TRAIN_METRICS_COLUMNS, VERDICTS)
from grpo_amp.parallel import parallel_map
from grpo_amp.stages.common import named_runs, output_path, stage_main
from grpo_amp.study.runs import draw_of, parse_run
from grpo_amp.tracking import mlflow_store as tracking

log = logging.getLogger(__name__)

# runs.csv column -> flattened config key: the variant's fields, every sweep's key, the iterations
SETTINGS = {**{f: f"variant.{f}" for f in ("norm", "kl", "beta", "beta_prev", "eps", "std")},
            **{s.name: s.key for s in registry.SWEEP_TABLE if s.name != "beta" and s.column}, "iterations": "grpo.iterations"}


def iteration_metrics(pred: pd.DataFrame) -> list[dict]:
    """Per-iteration MLflow metrics of one run: PoS mean and quantiles, prediction errors."""
    rows = []
    for n, g in pred.groupby("iteration"):  # means over questions and seeds
        train = g[g["split"] == "train"]
        row = {"iteration": int(n), "pos_mean": train["pos"].mean(), "pos_q10": train["pos"].quantile(0.1),
               "pos_q50": train["pos"].median(), "pos_q90": train["pos"].quantile(0.9),
               "pred_trajectory_mean": train["pred_trajectory"].mean(),
               "abs_err_trajectory": (train["pos"] - train["pred_trajectory"]).abs().mean(),
               "abs_err_one_step": (train["pos"] - train["pred_one_step"]).abs().mean(),
               "abs_err_trajectory_G": (train["pos"] - train["pred_trajectory_G"]).abs().mean()}
        held = g[g["split"] != "train"]
        if len(held):
            row["heldout_pos_mean"] = held["pos"].mean()
        rows.append(row)
    return rows


def run_row(policy: str, name: str, conf: dict, pred: pd.DataFrame) -> dict:
    """runs.csv's row of one run: its settings, read from the flattened config train wrote (run.json),
    and its summary numbers over seeds."""
    variant, sweep, _ = parse_run(name)
    settings = {col: conf.get(key) for col, key in SETTINGS.items()}
    return {"policy": policy, "run": name, "variant": variant, "sweep": sweep, **settings,
            **summarise_run(pred, settings)}


def _finite_groups(cfg: Config) -> dict[str, dict]:
    """policy -> the (norm, std, eps) of the advantage its loop really computes, where not the variant's (TRL):
    the predict stage puts it in the _G columns; the claims need it for C3_G's limits and fits."""
    from grpo_amp.analysis.predict import finite_group_advantage
    from grpo_amp.config import compose_config

    out = {}
    for policy in cfg.scale.study.policies:
        if registry.policy(policy).advantage != "variant":
            out[policy] = finite_group_advantage(compose_config([f"policy={policy}", f"scale={cfg.scale.name}"]))
    return out


def _per_seed(row: dict) -> dict:
    """A metrics.csv row as MLflow metrics: one series per seed (``seed3/loss``), pooled ones plain."""
    seed = int(row.pop("seed"))
    prefix = "" if seed < 0 else f"seed{seed}/"
    return {"iteration": row["iteration"], **{f"{prefix}{k}": v for k, v in row.items() if k != "iteration"}}


@dataclass(frozen=True)
class RunFiles:
    """One run's files as the rule names them."""
    policy: str
    run: str
    predict: Path
    train: Path | None = None
    pos: Path | None = None


def rule_files(inputs: RuleFiles) -> tuple[list[RunFiles], list[RunFiles]]:
    """(the runs, the draw runs) from the lists the rule hands over; InputError where they do not match."""
    if not inputs.run_names:
        raise InputError("inputs.run_names: the compare stage reads only the files its rule names; give the runs")
    runs = [RunFiles(p, r, Path(pred), Path(train), Path(pos)) for (p, r), pred, train, pos in zip(
        named_runs(inputs, "run_names", "predict_files", "train_dirs", "pos_files"),
        inputs.predict_files, inputs.train_dirs, inputs.pos_files)]
    draws = [RunFiles(p, r, Path(pred)) for (p, r), pred in zip(
        named_runs(inputs, "draw_run_names", "draw_predict_files"), inputs.draw_predict_files)]
    return runs, draws


def _summary(read: list, i: int) -> tuple[dict, list[dict]]:
    """runs.csv's row and the per-iteration metrics of run i of ``read`` ((policy, run, config, predict frame) each)."""
    policy, name, conf, pred = read[i]
    return run_row(policy, name, conf, pred), iteration_metrics(pred)


def run(cfg: Config) -> None:
    runs_files, draw_files = rule_files(cfg.inputs)
    read, predictions, c1, run_ids, notes, e3, redraws = [], {}, {}, {}, [], {}, {}
    for f in runs_files:
        policy, name = f.policy, f.run
        meta = read_json(f.train / "run.json")
        conf = meta["config"]
        pred = read_csv(f.predict, PREDICT_COLUMNS)
        c1[(policy, name)] = read_csv(f.train / "c1.csv", C1_COLUMNS)
        if (f.train / "e3_controls.csv").is_file():  # E3's tempering control (transformer runs)
            e3[(policy, name)] = read_csv(f.train / "e3_controls.csv", E3_CONTROL_COLUMNS)
        if (f.train / "redraws.csv").is_file():  # dynamic sampling's redraws per question (E6d)
            redraws[(policy, name)] = read_csv(f.train / "redraws.csv", REDRAWS_COLUMNS).assign(
                max_redraws=int(conf["estimator.max_redraws"]))  # the cap the run used (E6d's truncated law)
        predictions[(policy, name)] = pred
        run_ids[(policy, name)] = meta.get("mlflow_run_id")
        notes += [f"`{policy}/{name}`: {note}" for note in meta.get("notes", [])]
        read.append((policy, name, conf, pred))
    # each run's own numbers, one run at a time (over cfg.workers processes)
    summaries = parallel_map(_summary, range(len(read)), read, cfg.workers)
    runs = pd.DataFrame([row for row, _ in summaries], columns=RUN_COLUMNS)
    per_run_iterations = {(policy, name): m for (policy, name, _, _), (_, m) in zip(read, summaries)}
    table = claims_table(Study(runs, predictions, c1, finite_group=_finite_groups(cfg), e3=e3, redraws=redraws),
                         cfg.workers)
    ladder = ladder_table(runs, predictions)
    factorial, attribution = factorial_table(runs, predictions), attribution_table(runs, predictions)
    per_iteration = pd.DataFrame([{"policy": policy, "run": name, **row} for (policy, name), metrics
                                  in per_run_iterations.items() for row in metrics], columns=ITERATION_COLUMNS)
    write_csv(runs, output_path(cfg, "runs", paths.RUNS))
    write_csv(ladder, output_path(cfg, "ladder", paths.LADDER))
    write_csv(factorial, output_path(cfg, "factorial", paths.FACTORIAL))
    write_csv(attribution, output_path(cfg, "attribution", paths.ATTRIBUTION))
    write_csv(per_iteration, output_path(cfg, "iterations", paths.ITERATIONS))
    write_csv(_draws(cfg, predictions, draw_files), output_path(cfg, "draws", paths.DRAWS))
    write_csv(table, output_path(cfg, "claims_csv", paths.CLAIMS_CSV))
    write_text(claims_markdown(table, cfg.scale.name, notes), output_path(cfg, "claims_md", paths.CLAIMS_MD))
    log.info("claims at scale %s:\n%s", cfg.scale.name, table[["claim", "policy", "verdict", "value"]].to_string())
    study_run = (_track(cfg, runs_files, runs, per_run_iterations, run_ids, table) if cfg.tracking.enabled
                 else None)
    write_json({"uri": cfg.tracking.uri if cfg.tracking.enabled else None, "run_id": study_run},
               output_path(cfg, "study_run", paths.STUDY_RUN))


def _draws(cfg: Config, predictions: dict, draw_files: list[RunFiles]) -> pd.DataFrame:
    """draws.csv: each draw policy's base run (draw 0, already read) and its draw runs' predict frames."""
    study = cfg.scale.study
    frames = {}
    for policy in study.draw_policies:
        if (policy, study.sweep_variant) in predictions:
            frames[(policy, 0)] = predictions[(policy, study.sweep_variant)]
    for f in draw_files:
        if (f.policy, 0) in frames:  # a draw run without its base run in the study has nothing to sit beside
            frames[(f.policy, draw_of(f.run))] = read_csv(f.predict, PREDICT_COLUMNS)
    return draws_table(frames, study.sweep_variant)


def _track(cfg: Config, runs_files: list[RunFiles], runs: pd.DataFrame, per_run_iterations: dict, run_ids: dict,
           table: pd.DataFrame) -> str:
    """Every run's metrics and files, then the study run (the claims table and summaries); its run id."""
    uri = cfg.tracking.uri
    for f in runs_files:
        policy, name = f.policy, f.run
        run_id, train_dir = run_ids[(policy, name)], f.train
        if run_id is None:  # not tracked live by train: open the run now, with what train wrote
            meta = read_json(train_dir / "run.json")
            run_id = tracking.start_run(uri, cfg.scale.name, policy, name, meta["config"])
            metrics = read_csv(train_dir / "metrics.csv", TRAIN_METRICS_COLUMNS)
            files = [train_dir / "metrics.csv", train_dir / "c1.csv"]
            if (train_dir / "timing.csv").is_file():  # wall seconds per iteration, kept apart from the data
                metrics = metrics.merge(read_csv(train_dir / "timing.csv", TIMING_COLUMNS), on=["seed", "iteration"],
                                        how="left")
                files.append(train_dir / "timing.csv")
            tracking.log_metric_rows(uri, run_id, [_per_seed(row) for row in metrics.to_dict("records")])
            tracking.log_artifacts(uri, run_id, files, subdir="train")
        tracking.log_metric_rows(uri, run_id, per_run_iterations[(policy, name)])  # compare's iteration_metrics
        summary = runs[(runs["policy"] == policy) & (runs["run"] == name)].iloc[0]
        tracking.log_metric_rows(uri, run_id, [{"iteration": 0, **{k: summary[k] for k in (
            "gap_trajectory", "gap_one_step", "gap_trajectory_G", "beta_eff", "beta_eff_rmse", "final_pos_mean")}}])
        # one subdir each: both files are named {run}.csv, and the second would overwrite the first
        tracking.log_artifacts(uri, run_id, [f.pos], subdir="pos")
        tracking.log_artifacts(uri, run_id, [f.predict], subdir="predict")
        tracking.finish_run(uri, run_id)
    study_id = tracking.start_run(uri, cfg.scale.name, "study", "claims", {"scale": cfg.scale.name}, kind="study")
    verdict_counts = table["verdict"].value_counts()
    tracking.log_metric_rows(uri, study_id, [{"iteration": 0, **{f"n_{v}": float(verdict_counts.get(v, 0))
                                                                    for v in VERDICTS}}])
    tracking.log_artifacts(uri, study_id, [output_path(cfg, key, pattern) for key, pattern in (
        ("runs", paths.RUNS), ("ladder", paths.LADDER), ("factorial", paths.FACTORIAL),
        ("attribution", paths.ATTRIBUTION), ("claims_csv", paths.CLAIMS_CSV), ("claims_md", paths.CLAIMS_MD))])
    tracking.finish_run(uri, study_id)
    return study_id


if __name__ == "__main__":
    stage_main(run)
