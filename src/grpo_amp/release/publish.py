"""``publish``: copy a run's summary files into a published directory, with the provenance of the numbers.

    grpo-amp publish results/smoke results/published/<machine>/smoke --command "snakemake --cores all --config scale=smoke"

The directory's layout (and ``COMMAND.txt``'s ``#`` lines) is described in ``grpo_amp.release.published``,
which also holds ``check-published``'s comparison. Publish from the checkout and interpreter that ran.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from grpo_amp.io import InputError, atomic_path, write_csv, write_text
from grpo_amp.release.published import BENCHMARKS_FILE, COMMAND_FILE, FIGURES_DIR, SUMMARY_FILES, require_files


def benchmarks_table(run_dir: str | Path) -> pd.DataFrame:
    """Every ``benchmarks/<rule>/<job>.tsv`` of a run in one table: rule, job, then Snakemake's columns."""
    root = Path(run_dir) / "benchmarks"
    frames = []
    for tsv in sorted(root.rglob("*.tsv")):
        rel = tsv.relative_to(root)
        df = pd.read_csv(tsv, sep="\t")
        df.insert(0, "job", rel.with_suffix("").relative_to(rel.parts[0]).as_posix())
        df.insert(0, "rule", rel.parts[0])
        frames.append(df)
    if not frames:
        raise InputError(f"no benchmark TSV under {root}")
    return pd.concat(frames, ignore_index=True)


PIP_FREEZE_FILE = "pip-freeze.txt"
ROOT = Path(__file__).resolve().parents[3]  # the checkout whose code runs (src/grpo_amp/release/..)


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None  # not stripped: porcelain lines start with a space


def code_commit() -> tuple[str | None, list[str]]:
    """(HEAD's full hash, the tracked files that differ from it) of this checkout; (None, []) outside git.

    Changes under ``results/`` do not count: publishing writes there, and results are not code."""
    head = _git("rev-parse", "HEAD")
    if head is None:
        return None, []
    head = head.strip()
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results") or ""
    return head, [ln[3:] for ln in status.splitlines() if ln.strip()]


def pip_freeze() -> str:
    """``pip freeze`` of this interpreter (the versions the run used, if it ran here)."""
    proc = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all"], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise InputError(f"pip freeze failed: {proc.stderr.strip().splitlines()[-1:]}")
    return proc.stdout


def rule_threads() -> dict[str, int | str]:
    """Each rule's ``threads:`` in workflows/rules/*.smk (its OMP_NUM_THREADS); rules without one use 1. A rule whose
    threads depend on the job (a function of its wildcards) reads "per job (<file>)"."""
    out: dict[str, int | str] = {}
    for smk in sorted((ROOT / "workflows" / "rules").glob("*.smk")):
        rule = None
        for line in smk.read_text().splitlines():
            if m := re.match(r"^(?:local)?rule (\w+):", line):
                rule = m.group(1)
            elif rule and (m := re.match(r"^\s+threads:\s*(.+?)\s*$", line)):
                value = m.group(1).split("#")[0].strip()
                out[rule] = int(value) if value.isdigit() else f"per job ({smk.relative_to(ROOT)})"
    return out


def wall_time_per_rule(benchmarks: pd.DataFrame) -> dict[str, float]:
    """Seconds per rule, summed over its jobs' benchmark files (column ``s``), in first-seen order."""
    return {rule: float(benchmarks.loc[benchmarks["rule"] == rule, "s"].sum())
            for rule in dict.fromkeys(benchmarks["rule"])}


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what ``platform`` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def kernel_provenance() -> str:
    """What decides the low bits of a CPU run (issue 16): torch's CPU capability (the vectorised
    kernels ATen dispatches to; ATEN_CPU_CAPABILITY overrides it), the BLAS torch was built with, and
    the thread counts (OMP_NUM_THREADS as set for this process, torch's intra-op threads)."""
    import torch

    blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    forced = os.environ.get("ATEN_CPU_CAPABILITY")
    return (f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}"
            + (f" (ATEN_CPU_CAPABILITY={forced})" if forced else "")
            + f", BLAS {blas.group(1) if blas else 'unknown'}"
            + f", OMP_NUM_THREADS {os.environ.get('OMP_NUM_THREADS', 'unset')}, torch threads {torch.get_num_threads()}")


def _provenance(benchmarks: pd.DataFrame) -> list[str]:
    from grpo_amp import __version__

    head, dirty = code_commit()
    if head is None:
        commit = "unknown (not a git checkout)"
    else:
        commit = head + (f" (dirty: {len(dirty)} tracked file(s) differ: {', '.join(dirty[:5])}"
                         f"{', ...' if len(dirty) > 5 else ''})" if dirty else " (clean)")
    lines = [f"# commit: {commit}",
             f"# grpo-amp {__version__}, Python {platform.python_version()}, {platform.platform()}",
             f"# machine: {platform.machine()} {platform.processor() or ''}".rstrip()
             + f", {os.cpu_count()} CPUs"]
    lines.append(f"# cpu: {cpu_model()}")
    try:
        import torch

        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        lines.append(f"# torch {torch.__version__}, {cuda}")
        lines.append(f"# kernels: {kernel_provenance()}")
    except Exception:  # provenance is a courtesy: never fail a publish over it
        pass
    threads = rule_threads()
    lines.append("# threads per rule (OMP_NUM_THREADS, at most --cores): "
                 + ", ".join(f"{r} {n}" for r, n in threads.items()) + "; other rules 1")
    walls = wall_time_per_rule(benchmarks)
    lines.append("# wall time per rule, s (summed over its jobs in benchmarks.csv): "
                 + ", ".join(f"{r} {t:.1f}" for r, t in walls.items()) + f"; total {sum(walls.values()):.1f}")
    lines.append(f"# pip freeze: {PIP_FREEZE_FILE}")
    return lines


def publish(run_dir: str | Path, published_dir: str | Path, command: str) -> list[Path]:
    """Copy a run's summary files into ``published_dir`` (see the module docstring); the paths written."""
    run_dir, published_dir = Path(run_dir), Path(published_dir)
    if not command.strip():
        raise InputError("--command must give the command line that made the run")
    require_files(run_dir, SUMMARY_FILES)
    figures = sorted((run_dir / FIGURES_DIR).glob("*.png"))
    if not figures:
        raise InputError(f"no figures in {run_dir / FIGURES_DIR}")
    benchmarks = benchmarks_table(run_dir)
    published_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SUMMARY_FILES:
        with atomic_path(published_dir / name) as tmp:
            shutil.copyfile(run_dir / name, tmp)
        written.append(published_dir / name)
    for fig in figures:
        target = published_dir / FIGURES_DIR / fig.name
        with atomic_path(target) as tmp:
            shutil.copyfile(fig, tmp)
        written.append(target)
    write_csv(benchmarks, published_dir / BENCHMARKS_FILE)
    write_text(pip_freeze(), published_dir / PIP_FREEZE_FILE)
    write_text("\n".join([command.strip(), *_provenance(benchmarks)]) + "\n", published_dir / COMMAND_FILE)
    return written + [published_dir / p for p in (BENCHMARKS_FILE, PIP_FREEZE_FILE, COMMAND_FILE)]
