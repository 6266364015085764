"""The `full` scale without a GPU: its DAG dry-runs, and its code path runs on the CPU at smoke size.

The full scale differs from the others in more than size: two operations (+ and *), per-token
ratios, live MLflow tracking from inside `train`. Those paths run here, shrunk to seconds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from grpo_amp import registry
from grpo_amp.config import compose_config
from grpo_amp.study.runs import draw_runs_of_study, load_study, study_runs
from grpo_amp.schema import POS_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
SHRINK = ["task.modulus=5", "task.n_train=30", "task.n_heldout=10", "policy.model.n_layer=1",
          "policy.model.n_embd=32", "policy.model.n_head=2", "policy.model.intermediate_size=64",
          "policy.reference.steps=60", "policy.reference.batch_size=32", "grpo.iterations=2",
          "grpo.group_size=4", "grpo.c1_groups=2"]


def test_full_scale_config_keeps_its_distinct_choices():
    cfg = compose_config(["policy=transformer", "scale=full"])
    assert cfg.task.ops == ["+", "*"] and cfg.task.modulus == 23
    assert cfg.grpo.ratio_level.value == "token" and cfg.tracking.live
    assert cfg.policy.model.n_embd == 256


def test_full_scale_dry_run_lists_every_run():
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--config", "scale=full", "results=/nonexistent",
                          "-s", str(ROOT / "Snakefile"), "--directory", str(ROOT)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    study = load_study("full")
    runs = {p: study_runs("full", p) + draw_runs_of_study(study, p) for p in registry.POLICY_NAMES}  # draws 1..4
    assert sum(len(r) for r in runs.values()) > 90
    counts = dict(ln.split()[:2] for ln in out.stdout.splitlines() if ln.strip().startswith("train"))
    # full: a job per run of the transformer family (rule train, a GPU each), a job per table policy (train_<policy>)
    assert study.one_job_per_policy == ["tabular", "twin"]
    assert int(counts["train"]) == sum(len(r) for p, r in runs.items() if registry.family_of(p) == "transformer")
    table = {f"train_{p}" for p, r in runs.items() if r and registry.family_of(p) != "transformer"}
    assert table and set(counts) - {"train"} == table and all(counts[name] == "1" for name in table), counts


@pytest.mark.slow
def test_full_scale_transformer_code_path_on_cpu(tmp_path):
    common = ["policy=transformer", "scale=full", f"results={tmp_path}", "policy.device=cpu",
              f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "run_name=mean_std_ref", *SHRINK]

    def stage(name):
        res = subprocess.run([sys.executable, "-m", f"grpo_amp.stages.{name}", *common],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]

    for name in ("tracking", "reference", "train"):
        stage(name)
    pos = pd.read_csv(tmp_path / "full" / "pos" / "transformer" / "mean_std_ref.csv")
    assert list(pos.columns) == POS_COLUMNS
    n_seeds = 10  # conf/scale/full.yaml: study.seeds
    assert len(pos) == 40 * 3 * n_seeds and pos["pos"].between(0, 1).all() and pos["seed"].nunique() == n_seeds
    prompts = pd.read_csv(tmp_path / "full" / "reference" / "transformer" / "questions.csv")["prompt"]
    assert prompts.str.contains(r"\*").any() and prompts.str.contains(r"\+").any()

    from mlflow.tracking import MlflowClient  # live tracking: train opened the run itself

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("grpo-amp/full")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "seed0/mean_reward")] == [1, 2]
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "seed9/mean_reward")] == [1, 2]
