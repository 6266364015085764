"""Rule ``audit``: the audited run's PoS per checkpoint against the theory, with figure, summary and MLflow.

    python -m grpo_amp.stages.audit audit.base=/models/base 'audit.checkpoints=[/runs/out]' policy=transformer \
        task=file task.path=/data/q.jsonl results=results/audit-<digest> inputs.pos=results/audit-<digest>/points

Reads every point's PoS file (``inputs.pos``: the folder audit_point wrote into). Writes, under ``results``:
pos.csv (POS_COLUMNS + step), predict.csv (PREDICT_COLUMNS with one checkpoint = one C3 iteration at the
run's beta, plus step, pred_nominal, pred_fit and their theory iterations), checkpoints.csv (step, path,
mean PoS, what the trainer logged), audit_questions.csv, audit.csv (overall), audit.md, figures/audit.png.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from grpo_amp.tracking import mlflow_store as tracking
from grpo_amp.audit.analysis import analyse
from grpo_amp.audit.checkpoints import find_points, trainer_log
from grpo_amp.audit.measure import AUDIT_POS_COLUMNS
from grpo_amp.audit.report import figure, markdown
from grpo_amp.config import Config, flatten
from grpo_amp.io import InputError, read_csv, write_csv, write_text
from grpo_amp.analysis.predict import batch_std, predict_frame
from grpo_amp.schema import POS_COLUMNS, PREDICT_COLUMNS
from grpo_amp.stages.common import stage_main

log = logging.getLogger(__name__)
FILES = {"pos": "pos.csv", "predict": "predict.csv", "checkpoints": "checkpoints.csv",
         "questions": "audit_questions.csv", "overall": "audit.csv", "md": "audit.md", "figure": "figures/audit.png"}


def theory_kwargs(cfg: Config, p_ref_train) -> dict:
    """The variant's penalty and the run's advantage estimator (``estimator=``, conf/estimator: a TRL run
    is ``trl_default``, Dr. GRPO ``dr_grpo``, ...) as theory keywords; batch: sigma_b from the base's PoS."""
    v = cfg.variant
    est = cfg.advantage
    sd = batch_std(p_ref_train) if est.batch else None
    return dict(**v.penalty_kwargs(), **est.theory_kwargs(sd))


def run(cfg: Config) -> None:
    root = Path(cfg.results)
    points = find_points(cfg.audit.base, cfg.audit.checkpoints)
    folder = Path(cfg.inputs.pos) if cfg.inputs.pos else root / "points"
    pos = pd.concat([read_csv(folder / f"{p.name}.csv", AUDIT_POS_COLUMNS) for p in points], ignore_index=True)
    if sorted(pos["iteration"].unique()) != list(range(len(points))):
        raise InputError(f"{folder}: the point files are not this audit's (iterations {sorted(pos['iteration'].unique())})")
    base = pos[(pos["iteration"] == 0) & (pos["split"] == "train")]
    theory_kw = theory_kwargs(cfg, base["pos"].to_numpy())
    G = cfg.grpo.group_size
    spi = cfg.audit.steps_per_iteration or cfg.grpo.inner_steps
    per_q, overall, cols = analyse(pos, spi, theory_kw, G, cfg.audit.max_iterations_per_interval)

    predict = predict_frame(pos[POS_COLUMNS], cfg.variant, G, estimator=cfg.advantage)
    extra = pd.DataFrame({"iteration": np.repeat(cols["iterations"], len(cols["questions"])),
                          "question": np.tile(cols["questions"], len(cols["iterations"])),
                          **{k: np.asarray(v).ravel() for k, v in cols.items() if k not in ("questions", "iterations")}})
    predict = predict.merge(pos[["question", "iteration", "step"]], on=["question", "iteration"], validate="one_to_one")
    predict = predict.merge(extra, on=["question", "iteration"], how="left", validate="one_to_one")
    predict = predict[[*PREDICT_COLUMNS, "step", "pred_nominal", "pred_fit", "theory_iteration_nominal",
                       "theory_iteration_fit"]]
    train = pos[pos["split"] == "train"]
    ckpts = pd.DataFrame([{"iteration": i, "step": p.step, "path": str(p.path),
                           "pos_mean": float(train.loc[train["iteration"] == i, "pos"].mean()), **trainer_log(p)}
                          for i, p in enumerate(points)])
    means = predict[predict["split"] == "train"].groupby("iteration")[["pred_nominal", "pred_fit"]].mean()
    ckpts = ckpts.merge(means.add_suffix("_mean").reset_index(), on="iteration")

    write_csv(pos, root / FILES["pos"])
    write_csv(predict, root / FILES["predict"])
    write_csv(ckpts, root / FILES["checkpoints"])
    write_csv(per_q, root / FILES["questions"])
    write_csv(pd.DataFrame([overall]), root / FILES["overall"])
    figure(predict, per_q, overall, theory_kw, G, root / FILES["figure"])
    command = "python -m grpo_amp.stages.audit " + " ".join(shlex.quote(a) for a in sys.argv[1:]
                                                            if not a.startswith(("results=", "inputs.", "tracking.")))
    write_text(markdown(overall, per_q, ckpts, command), root / FILES["md"])
    log.info("audit: %s; fit beta %.4g with %d iterations per interval (%s); shape slope %.4g, R^2 %.3f",
             overall["verdict_nominal"], overall["beta_fit"], overall["iterations_per_interval_fit"],
             overall["verdict_fit"], overall["shape_slope"], overall["shape_r2"])
    if cfg.tracking.enabled:
        _track(cfg, root, ckpts, overall)


def _track(cfg: Config, root: Path, ckpts: pd.DataFrame, overall: dict) -> None:
    """One MLflow run: the settings, PoS and predictions per checkpoint (step = optimiser step), the files."""
    label = root.name
    tracking.init_tracking(cfg.tracking.uri, label, artifact_root=str(root / "mlartifacts"))
    params = {**flatten(cfg), **{f"audit.{k}": v for k, v in vars(cfg.audit).items()}}
    run_id = tracking.start_run(cfg.tracking.uri, label, "audit", label, params)
    numeric = [c for c in ckpts.columns if c not in ("path", "iteration")]
    tracking.log_metric_rows(cfg.tracking.uri, run_id, ckpts[numeric].to_dict("records"), step_key="step")
    summary = {k: v for k, v in overall.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tracking.log_metric_rows(cfg.tracking.uri, run_id, [{**summary, "step": int(ckpts["step"].iloc[-1])}],
                             step_key="step")
    tracking.log_artifacts(cfg.tracking.uri, run_id, [root / f for f in FILES.values()])
    tracking.finish_run(cfg.tracking.uri, run_id)


if __name__ == "__main__":
    stage_main(run)
