"""Live tracking under load: 8 processes write to one SQLite store at once, as 8 train jobs with
``tracking.live=true`` do under ``snakemake --cores 8``.

The store is created once first (as the ``tracking`` rule does); then each process starts its run,
logs one metrics row per iteration (one write each, the live path's pattern), logs an artifact and
ends the run, all through ``grpo_amp.tracking.mlflow_store``, the eight started together. Nothing may be lost
and no "database is locked" may escape.

Measured here: at this load MLflow's own SQLite busy timeout (20 s per session) absorbs the
collisions, and the test also passes with our retry disabled; the retry covers what MLflow's does
not (opening the store, a reader's lock upgrade, which SQLite fails at once). The second test plants
the busy error to prove the retry itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grpo_amp.tracking import mlflow_store as tracking

pytestmark = pytest.mark.slow

N_JOBS = 8
N_ITERS = 12
SCALE = "load"

WORKER = r'''
import sys, time
from pathlib import Path
from grpo_amp.tracking import mlflow_store as tracking

uri, job, iters, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
tracking.client(uri).search_experiments()  # imports and store open done before the start line
(out / f"ready_{job}").touch()
while not (out / "go").exists():
    time.sleep(0.01)
t0 = time.time()
run_id = tracking.start_run(uri, "load", "tabular_sgd", f"job{job}", {"job": job, "grpo.iterations": iters})
for n in range(1, iters + 1):
    tracking.log_metric_rows(uri, run_id, [{"iteration": n, "pos_mean": job + n / 100, "loss": -n}])
csv = out / f"metrics_{job}.csv"
csv.write_text("iteration,pos_mean\n" + "".join(f"{n},{job + n / 100}\n" for n in range(1, iters + 1)))
tracking.log_artifacts(uri, run_id, [csv], subdir="train")
tracking.finish_run(uri, run_id)
print(run_id, t0, time.time())
'''


def test_eight_live_jobs_lose_no_run_and_no_lock_escapes(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp_id = tracking.init_tracking(uri, SCALE, artifact_root=str(tmp_path / "mlartifacts"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"), env.get("PYTHONPATH", "")])
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, uri, str(job), str(N_ITERS), str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for job in range(N_JOBS)]
    deadline = time.monotonic() + 240
    while len(list(tmp_path.glob("ready_*"))) < N_JOBS:  # all 8 start writing together
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a worker died early"
        time.sleep(0.05)
    (tmp_path / "go").touch()
    results = [(p, *p.communicate(timeout=240)) for p in procs]
    for job, (proc, out, err) in enumerate(results):
        assert proc.returncode == 0, (job, err[-3000:])
        assert "locked" not in err.lower() and "Traceback" not in err, (job, err[-3000:])

    spans = [tuple(map(float, out.split()[1:])) for _, out, _ in results]
    assert max(t0 for t0, _ in spans) < min(t1 for _, t1 in spans), spans  # the writes overlapped

    c = tracking.client(uri)
    runs = c.search_runs([exp_id], max_results=100)
    assert len(runs) == N_JOBS
    by_job = {r.data.tags["run"]: r for r in runs}
    assert set(by_job) == {f"job{j}" for j in range(N_JOBS)}
    for job in range(N_JOBS):
        run = by_job[f"job{job}"]
        assert run.info.status == "FINISHED"
        assert run.info.run_id == results[job][1].split()[0]
        history = c.get_metric_history(run.info.run_id, "pos_mean")
        assert sorted((m.step, m.value) for m in history) == [(n, job + n / 100) for n in range(1, N_ITERS + 1)]
        assert [a.path for a in c.list_artifacts(run.info.run_id, "train")] == [f"train/metrics_{job}.csv"]


def test_the_retry_waits_out_a_locked_error_and_lets_others_through(monkeypatch):
    """_call retries only SQLite's busy errors, with waits inside the jittered, capped bound."""
    waits = []
    monkeypatch.setattr(tracking.time, "sleep", waits.append)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert tracking._call(flaky) == "ok" and len(calls) == 4
    assert len(waits) == 3
    assert all(0 <= w <= min(tracking.RETRY_CAP_S, tracking.RETRY_BASE_S * 2 ** i) for i, w in enumerate(waits))

    def broken():
        raise ValueError("no such run")

    with pytest.raises(ValueError, match="no such run"):
        tracking._call(broken)
    assert len(waits) == 3  # not retried

    def always_locked():
        raise RuntimeError("database is locked")

    with pytest.raises(RuntimeError, match="locked"):
        tracking._call(always_locked)
    assert len(waits) == 3 + tracking.RETRY_ATTEMPTS - 1
