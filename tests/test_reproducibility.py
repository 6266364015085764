"""Same config, same machine, same thread count: the same bytes. Another machine: the same verdicts.

Two more smoke studies beside the session's (``smoke_study``): one clean, one SIGKILLed (Snakemake
and every job it started) while training and resumed with ``--rerun-incomplete``. Every data file
(CSV tables, JSON task descriptions, safetensors policy states) of every policy must be
byte-identical to the session study's. Not compared, because they are not data: ``timing.csv``
(wall seconds), ``run.json``, ``tracking.json`` and ``study_run.json`` (absolute paths, MLflow run ids), logs, Hydra
logs, benchmarks, figures and the report. Both reruns skip MLflow and the report
(``tracking=false``): the numbers do not depend on either.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

import helpers.pipeline as tp  # noqa: E402  (its snakemake helpers)

pytestmark = pytest.mark.slow

DATA_SUFFIXES = (".csv", ".json", ".safetensors")
NOT_DATA_NAMES = {"timing.csv", "run.json", "tracking.json", "study_run.json"}  # the last: an MLflow run id
NOT_DATA_DIRS = {"hydra", "logs", "benchmarks", "figures", "mlartifacts"}
RERUN_CONFIG = ("tracking=false",)


def data_files(scale_dir: Path) -> dict[str, str]:
    """{path under results/smoke: sha256} of every data file."""
    out = {}
    for p in sorted(scale_dir.rglob("*")):
        rel = p.relative_to(scale_dir)
        if (p.is_file() and p.suffix in DATA_SUFFIXES and p.name not in NOT_DATA_NAMES
                and not NOT_DATA_DIRS & set(rel.parts) and not any(part.startswith(".") for part in rel.parts)):
            out[rel.as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_same_data(reference: Path, other: Path) -> None:
    ref, got = data_files(reference), data_files(other)
    assert sorted(got) == sorted(ref), (sorted(set(ref) ^ set(got)))
    differ = [name for name in ref if ref[name] != got[name]]
    assert not differ, f"{len(differ)} of {len(ref)} data files differ: {differ[:10]}"
    policies = {name.split("/")[1] for name in ref if name.startswith("train/")}
    assert policies == set(tp.POLICIES)  # every policy's files were compared


def test_a_second_clean_run_gives_byte_identical_data(smoke_study, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke-again")
    rc, out = tp.run_snakemake(workdir, "--cores", tp.CORES, config=RERUN_CONFIG)
    assert rc == 0, out[-3000:]
    assert_same_data(smoke_study, workdir / "results" / "smoke")


def test_a_run_killed_mid_train_and_resumed_gives_the_same_data(smoke_study, tmp_path_factory):
    """SIGKILL once the first train output exists (others still training), --unlock, then
    --rerun-incomplete: the resumed study's data files equal the clean study's, byte for byte."""
    workdir = tmp_path_factory.mktemp("smoke-killed")
    scale_dir = workdir / "results" / "smoke"
    with open(workdir / "killed.log", "w") as log:
        proc = subprocess.Popen(tp.snakemake_cmd(workdir, "--cores", tp.CORES, config=RERUN_CONFIG), cwd=workdir,
                                env=tp.snakemake_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + tp.RUN_TIMEOUT_S
            while not list(scale_dir.glob("train/*/[!.]*")):
                assert proc.poll() is None, "snakemake ended before any train output: see killed.log"
                assert time.monotonic() < deadline, "no train output in time"
                time.sleep(0.2)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # snakemake and every job it started
            except ProcessLookupError:
                pass
            proc.wait(timeout=60)
    assert not (scale_dir / "claims.csv").exists(), "the study had finished before the kill"
    n_train = len(list(scale_dir.glob("train/*/[!.]*")))

    rc, out = tp.run_snakemake(workdir, "--unlock", log="unlock.log", config=RERUN_CONFIG)
    assert rc == 0, out[-3000:]
    rc, out = tp.run_snakemake(workdir, "--cores", tp.CORES, "--rerun-incomplete", log="resumed.log",
                               config=RERUN_CONFIG)
    assert rc == 0, out[-3000:]
    assert len(list(scale_dir.glob("train/*/[!.]*"))) > n_train  # the resumed run trained the rest
    assert_same_data(smoke_study, scale_dir)


def other_capability() -> str:
    """A CPU capability this machine offers other than the one torch picks by itself."""
    top = torch.backends.cpu.get_cpu_capability().lower()
    return "avx2" if top == "avx512" else "default"


def test_another_machine_reproduces_the_published_summary(tmp_path_factory, capsys):
    """Kernels and thread counts change the low bits (softmax, log, exp); every published smoke row must
    still reproduce, and the report says which rule judged each row (printed: pytest -s shows it)."""
    from grpo_amp.cli import main

    workdir = tmp_path_factory.mktemp("smoke-other-machine")
    capability = other_capability()
    rc, out = tp.run_snakemake(workdir, "--cores", "1", config=RERUN_CONFIG,
                               extra_env={"ATEN_CPU_CAPABILITY": capability})
    assert rc == 0, out[-3000:]
    capsys.readouterr()
    rc = main(["check-published", str(workdir / "results" / "smoke"), str(tp.PUBLISHED_SMOKE)])
    report = capsys.readouterr().out
    with capsys.disabled():
        print(f"\nsimulated machine: ATEN_CPU_CAPABILITY={capability}, --cores 1\n{report}")
    lines = tp.status_lines(report)
    assert lines and all(re.search(r"  reproduced  \[", ln) for ln in lines), "\n".join(
        ln for ln in lines if "  reproduced  [" not in ln)
    assert rc == 0
