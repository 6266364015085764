"""The smoke study as on a cluster: Snakemake's cluster-generic executor and an MLflow server.

Every job goes through a submit script (here: each job script becomes its own background
process, a stand-in for sbatch) and logs to a live `mlflow server` over HTTP, as jobs on a
cluster would. The PoS numbers must equal those of the local run (tests/test_pipeline.py's, made
once per session), and every (policy, run) must be in the server.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers.pipeline as tp  # noqa: E402  (its helpers and the shared local smoke study)
from helpers.mlflow_server import mlflow_server, stop  # noqa: E402,F401  (mlflow_server: a fixture used here)

pytestmark = pytest.mark.slow
pytest.importorskip("snakemake_executor_plugin_cluster_generic")

SUBMIT = """#!/bin/sh
# A local stand-in for a scheduler's submit command: run the job script as its own background
# process, detached from this one, and print its "job id" (the pid) as sbatch would.
jobscript="$1"
logs="$(dirname "$0")/cluster-logs"
mkdir -p "$logs"
nohup /bin/sh "$jobscript" > "$logs/$(basename "$jobscript").log" 2>&1 < /dev/null &
echo "$!"
"""


@pytest.fixture(scope="module")
def local_smoke(tmp_path_factory) -> Path:
    return tp.smoke_study(tmp_path_factory)


def test_cluster_generic_run_with_mlflow_server(local_smoke, mlflow_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke-cluster")
    submit = workdir / "submit.sh"
    submit.write_text(SUBMIT)
    submit.chmod(0o755)
    options = ("--executor", "cluster-generic", "--cluster-generic-submit-cmd", str(submit), "--jobs", "2",
               "--seconds-between-status-checks", "1", "--latency-wait", "10")
    cmd = tp.snakemake_cmd(workdir, *options, tracking_uri=mlflow_server, config=())
    with open(workdir / "snakemake.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, env=tp.snakemake_env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=tp.RUN_TIMEOUT_S)
        finally:
            stop(proc)  # snakemake and any job still running in its process group (on a timeout)
    out = (workdir / "snakemake.log").read_text()
    assert rc == 0, out[-4000:]

    scale_dir = workdir / "results" / "smoke"
    n_jobs = len(list((scale_dir / "benchmarks").rglob("*.tsv")))
    # Every job went through submit.sh, once (a predict job is a job group `run` of its own here: no
    # --group-components, so one submission each).
    assert len(list((workdir / "cluster-logs").glob("*"))) == n_jobs
    tp.assert_same_pos(local_smoke, scale_dir)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("grpo-amp/smoke")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    per_run = [r for r in runs if r.data.tags.get("grpo_amp.kind") == "run"]
    assert Counter((r.data.tags["policy"], r.data.tags["run"]) for r in per_run) == Counter(tp.study())
    assert all(r.info.status == "FINISHED" for r in per_run)
    assert sum(r.data.tags.get("grpo_amp.kind") == "study" for r in runs) == 1
    for r in per_run:
        assert client.get_metric_history(r.info.run_id, "pos_mean")
