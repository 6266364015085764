"""MLflow tracking: one experiment per scale, one run per (policy, run name), one study run per scale.

    init_tracking(uri, scale)                      # once, before parallel jobs (rule ``tracking``)
    run_id = start_run(uri, scale, policy, run, params)
    log_metric_rows(uri, run_id, [{"iteration": 1, "pos_mean": 0.7}, ...])
    log_artifacts(uri, run_id, [path, ...])

The URI is a config value (``tracking.uri``): ``sqlite:///results/mlflow.db`` on a laptop, an
``http://`` MLflow server on a cluster; the code is the same. SQLite allows one writer at a time,
so writes retry briefly when two jobs collide.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import time
from collections.abc import Iterable
from pathlib import Path

EXPERIMENT_PREFIX = "grpo-amp"
RUN_KIND_TAG = "grpo_amp.kind"  # "run" for a (policy, run) pair, "study" for the scale's summary run


def experiment_name(scale: str) -> str:
    return f"{EXPERIMENT_PREFIX}/{scale}"


def _quiet() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _retry(func):
    """Retry on SQLite's 'database is locked' (parallel Snakemake jobs share one file)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        for attempt in range(8):
            try:
                return func(*args, **kwargs)
            except Exception as exc:  # mlflow wraps sqlalchemy's OperationalError in its own types
                if "locked" not in str(exc).lower() or attempt == 7:
                    raise
                time.sleep(0.2 * 2 ** attempt * (1 + random.random()))
    return wrapper


@functools.lru_cache(maxsize=4)
def client(uri: str):
    _quiet()
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


@_retry
def init_tracking(uri: str, scale: str, artifact_root: str | None = None) -> str:
    """Create the store (schema migrations run here, once) and the scale's experiment; its id."""
    c = client(uri)
    name = experiment_name(scale)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    # a local store keeps artifacts under results/, not in ./mlartifacts at the project's top level;
    # a server (http://...) keeps them in its own artifact store, which every cluster job can reach
    local = not uri.startswith(("http://", "https://"))
    location = Path(artifact_root).resolve().as_uri() if local and artifact_root is not None else None
    return c.create_experiment(name, artifact_location=location)


def _experiment_id(uri: str, scale: str) -> str:
    exp = client(uri).get_experiment_by_name(experiment_name(scale))
    if exp is None:
        raise RuntimeError(f"MLflow experiment {experiment_name(scale)!r} is missing at {uri}; "
                           "run the `tracking` rule first (snakemake does)")
    return exp.experiment_id


@_retry
def start_run(uri: str, scale: str, policy: str, run: str, params: dict, kind: str = "run") -> str:
    """A fresh MLflow run for (policy, run), replacing any earlier one with the same tags (reruns)."""
    c = client(uri)
    exp_id = _experiment_id(uri, scale)
    query = (f"tags.policy = '{policy}' and tags.run = '{run}' and tags.scale = '{scale}' "
             f"and tags.`{RUN_KIND_TAG}` = '{kind}'")
    for old in c.search_runs([exp_id], filter_string=query):
        c.delete_run(old.info.run_id)
    tags = {"policy": policy, "run": run, "scale": scale, "variant": run.split("-")[0], RUN_KIND_TAG: kind}
    r = c.create_run(exp_id, run_name=f"{policy}/{run}", tags=tags)
    from mlflow.entities import Param

    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(items), 100):  # MLflow caps params per batch at 100
        c.log_batch(r.info.run_id, params=items[i:i + 100])
    return r.info.run_id


@_retry
def log_metric_rows(uri: str, run_id: str, rows: Iterable[dict], step_key: str = "iteration") -> None:
    """Log each row's numeric fields as metrics at step = row[step_key]."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, int(row[step_key])) for row in rows for k, v in row.items()
               if k != step_key and v is not None and v == v]  # v == v drops NaN
    c = client(uri)
    for i in range(0, len(metrics), 1000):
        c.log_batch(run_id, metrics=metrics[i:i + 1000])


@_retry
def log_artifacts(uri: str, run_id: str, paths: Iterable[str | Path], subdir: str | None = None) -> None:
    c = client(uri)
    for path in paths:
        c.log_artifact(run_id, str(path), artifact_path=subdir)


@_retry
def finish_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    client(uri).set_terminated(run_id, status=status)
