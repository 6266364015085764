"""The smoke study and Snakemake invocations shared by the pipeline, cluster, SLURM, reproducibility,
audit and user-model tests: one local smoke study per session (``smoke_study``, reused through a
marker file in pytest's session temp dir), commands on this project's Snakefile in temporary
directories, and readers of the files a run wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from grpo_amp import paths, registry
from grpo_amp.study.runs import study_runs

ROOT = Path(__file__).resolve().parents[2]  # tests/helpers/ -> the repository
SNAKEFILE = ROOT / "Snakefile"
PROFILES = ROOT / "workflows" / "profiles"
POLICIES = registry.POLICY_NAMES
CLAIMS_ANY_POLICY = ("C1", "C2", "C3", "C3_G", "C4a", "C4b", "C5a", "C5b", "C6a", "C6b", "C7a", "C7b", "E1a", "E1b",
                     "E2a", "E2b", "E4", "E4_G", "E5")
FIGURES = registry.FIGURE_NAMES
CORES = "2"  # the same in every run: a rule's threads (so its float sums) must not vary between runs
RUN_TIMEOUT_S = 1200  # one smoke study: about 80 s on an idle 2-core machine
MLFLOW_PARAMS = ("variant.beta", "variant.kl", "variant.norm", "variant.eps", "variant.beta_prev",
                 "grpo.group_size")


def snakemake_env() -> dict:
    """The rules call `python -m grpo_amp...`: this interpreter's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SNAKEMAKE_PROFILE", None)
    return env


def snakemake_cmd(workdir: Path, *options: str, scale: str = "smoke", tracking_uri: str | None = None,
                  config: tuple[str, ...] = ()) -> list[str]:
    """snakemake on this project's Snakefile, run in ``workdir`` with every output under workdir/results."""
    results = Path(workdir) / "results"
    uri = tracking_uri or f"sqlite:///{results}/mlflow.db"
    return [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), *options,
            "--config", f"scale={scale}", f"results={results}", f"tracking_uri={uri}", *config]


def run_snakemake(workdir: Path, *options: str, log: str = "snakemake.log", timeout: float = RUN_TIMEOUT_S,
                  extra_env: dict | None = None, **kwargs) -> tuple[int, str]:
    """(exit status, its output), the output also kept in workdir/<log>; ``extra_env`` is added to
    the environment every job inherits (e.g. ATEN_CPU_CAPABILITY)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**snakemake_env(), **(extra_env or {})}
    proc = subprocess.run(snakemake_cmd(workdir, *options, **kwargs), cwd=workdir, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    (workdir / log).write_text(proc.stdout)
    return proc.returncode, proc.stdout


def smoke_study(tmp_path_factory) -> Path:
    """results/smoke of one local smoke study (tracking to SQLite, HTML report), made once per session."""
    workdir = tmp_path_factory.getbasetemp() / "smoke-local"
    done, failed = workdir / "DONE", workdir / "FAILED"
    if not done.exists():
        if failed.exists():  # do not pay for the same failure twice
            pytest.fail(failed.read_text())
        start = time.monotonic()
        report = workdir / "results" / "smoke" / "report.html"  # the documented way: --report-after-run
        rc, out = run_snakemake(workdir, "--cores", CORES, "--report", str(report), "--report-after-run")
        if rc != 0:
            failed.write_text(f"the local smoke study failed (exit {rc}):\n{out[-4000:]}")
            pytest.fail(failed.read_text())
        done.write_text(f"{time.monotonic() - start:.1f}\n")
    return workdir / "results" / "smoke"


def study() -> list[tuple[str, str]]:
    return [(policy, run) for policy in POLICIES for run in study_runs("smoke", policy)]


def fill(pattern: str, scale_dir: Path, **fields) -> Path:
    return Path(pattern.format(results=scale_dir.parent, scale=scale_dir.name, **fields))


def pos_table(scale_dir: Path, policy: str, run: str) -> pd.DataFrame:
    return pd.read_csv(fill(paths.POS, scale_dir, policy=policy, run=run))


def assert_same_pos(scale_dir: Path, other_dir: Path) -> None:
    """Every pos CSV of the smoke study equal, number for number, in two runs."""
    for policy, run in study():
        pd.testing.assert_frame_equal(pos_table(other_dir, policy, run), pos_table(scale_dir, policy, run),
                                      check_exact=True, obj=f"pos/{policy}/{run}.csv")


def train_config(scale_dir: Path, policy: str, run: str) -> dict:
    return json.loads((fill(paths.TRAIN, scale_dir, policy=policy, run=run) / "run.json").read_text())["config"]


PUBLISHED_SMOKE = ROOT / "results" / "published" / "cpu-2core" / "smoke"


def status_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith(("claims ", "runs "))]
