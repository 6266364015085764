"""MLflow tracking: one experiment per scale, one run per (policy, run name), one study run per scale.

    init_tracking(uri, scale)                      # once, before parallel jobs (rule ``tracking``)
    run_id = start_run(uri, scale, policy, run, params)
    log_metric_rows(uri, run_id, [{"iteration": 1, "pos_mean": 0.7}, ...])
    log_artifacts(uri, run_id, [path, ...])

The URI is a config value (``tracking.uri``): ``sqlite:///results/mlflow.db`` on a laptop, an
``http://`` MLflow server on a cluster; the code is the same. SQLite allows one writer at a time:
every call of the client (:func:`client`) retries on "database is locked" with capped exponential
backoff and jitter, one call at a time. The store is created once, before parallel jobs start
(:func:`init_tracking`, rule ``tracking``), so jobs never race on its schema migrations.
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


# SQLite's busy errors (sqlite3's OperationalError, which MLflow wraps with the text kept).
_LOCKED = ("database is locked", "database table is locked", "database schema is locked")
RETRY_ATTEMPTS = 12
RETRY_BASE_S = 0.05  # the first wait at most 50 ms, doubling up to RETRY_CAP_S: ~25 s in all at worst
RETRY_CAP_S = 4.0
# Its own generator, seeded by the OS: jobs that seed Python's `random` with the same cfg.seed
# must not back off in lockstep.
_jitter = random.Random(int.from_bytes(os.urandom(8), "little"))


def _is_locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(m in text for m in _LOCKED)


def _call(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, retried on SQLite's busy errors with capped exponential backoff and
    full jitter (a uniform wait in [0, min(cap, base * 2**attempt)]), so colliding jobs spread out."""
    for attempt in range(RETRY_ATTEMPTS):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # mlflow wraps sqlalchemy's OperationalError in its own types
            if not _is_locked(exc) or attempt == RETRY_ATTEMPTS - 1:
                raise
            time.sleep(_jitter.uniform(0, min(RETRY_CAP_S, RETRY_BASE_S * 2 ** attempt)))


class _RetryingClient:
    """An MlflowClient whose every method call retries on SQLite's busy errors, one call at a time:
    a retry never repeats the calls before it (no duplicate metrics, no second run)."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def method(*args, **kwargs):
            return _call(attr, *args, **kwargs)
        return method


@functools.lru_cache(maxsize=4)
def client(uri: str):
    """The MLflow client for ``uri``; each of its calls retries on 'database is locked'."""
    _quiet()
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return _RetryingClient(MlflowClient(tracking_uri=uri))


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


def log_metric_rows(uri: str, run_id: str, rows: Iterable[dict], step_key: str = "iteration") -> None:
    """Log each row's numeric fields as metrics at step = row[step_key]."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, int(row[step_key])) for row in rows for k, v in row.items()
               if k != step_key and v is not None and v == v]  # v == v drops NaN
    c = client(uri)
    for i in range(0, len(metrics), 1000):
        c.log_batch(run_id, metrics=metrics[i:i + 1000])


def log_artifacts(uri: str, run_id: str, paths: Iterable[str | Path], subdir: str | None = None) -> None:
    c = client(uri)
    for path in paths:
        c.log_artifact(run_id, str(path), artifact_path=subdir)


def finish_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    client(uri).set_terminated(run_id, status=status)


# --------------------------------------------------------------------------- the UI
# MLflow 3.17's UI decides what an experiment page shows from its "workflow type", not from the
# experiment's `mlflow.experimentKind` tag (its feature flag for the sidebar switch is always on):
# the `workflowType` query parameter, else the browser's saved choice (localStorage
# "mlflow.workflowType"), else "genai", the GenAI overview that shows "No data" for training
# runs. The sidebar's "Model training" switch sets the same parameter.
WORKFLOW_PARAM = "workflowType=machine_learning"


def runs_view_url(experiment_id: str, host: str = "127.0.0.1", port: int = 5000) -> str:
    """The UI's runs table of one experiment, in "Model training" mode."""
    return f"http://{host}:{port}/#/experiments/{experiment_id}/runs?{WORKFLOW_PARAM}"


def find_experiment_id(uri: str, scale: str) -> str:
    """The scale's experiment id at ``uri``; InputError (one line) if the store or experiment is missing."""
    from grpo_amp.io import InputError

    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise InputError(f"no MLflow store at {uri}: run the pipeline first (snakemake --cores all)")
    exp = client(uri).get_experiment_by_name(experiment_name(scale))
    if exp is None:
        raise InputError(f"no MLflow experiment {experiment_name(scale)!r} at {uri}: run the pipeline "
                         f"for scale={scale} first")
    return exp.experiment_id
