"""Published runs: keep a run's small summary files, and check a fresh run against them.

    grpo-amp publish results/smoke results/published/<machine>/smoke --command "snakemake --cores all --config scale=smoke"
    grpo-amp check-published results/smoke results/published/<machine>/smoke

A published directory (``results/published/<machine>/<scale>/``) holds what ``publish`` copies
from ``results/<scale>/``: ``claims.csv``, ``claims.md``, ``runs.csv``, ``figures/*.png``,
``benchmarks.csv`` (every job's Snakemake benchmark TSV in one table) and ``COMMAND.txt`` (the
command that made the run, then ``#`` lines with the versions it ran with).

``check-published`` compares ``claims.csv`` (one line per claim and policy) and ``runs.csv`` (one
line per policy and run) of a fresh run with the published ones and prints ``reproduced`` or
``differs (...)`` for each line; it exits 1 if any differs. The rules:

- a claim's ``verdict`` and ``metric`` must be equal; a run's settings (``SETTING_COLUMNS``:
  variant, norm, kl, beta, ..., iterations) must be equal;
- every other number (a claim's ``value`` and ``tolerance``; a run's ``final_pos_mean``,
  ``gap_*``, ``heldout_gain``, ``beta_eff``, ...) must lie within the tolerance of its kind:

  ======================  ==========================  ========  ========  =======================================
  kind                    rows                        absolute  relative  why
  ======================  ==========================  ========  ========  =======================================
  exact control           policy ``tabular_exact``    1e-6      --        closed-form updates in float64 and
                                                                          seeded draws: only rounding may move
  practice                ``tabular_sgd``,            0.02      10 %      SGD and sampling: thread counts, BLAS
                          ``transformer``                       (either)  and GPU kernels reorder sums
  ======================  ==========================  ========  ========  =======================================

  A number passes if ``|fresh - published| <= absolute`` or ``<= relative * |published|``
  (practice only). Two NaNs (a summary the run has no data for) are equal; NaN against a number
  differs.
- a line present on one side only differs.

``evidence`` (free text) is not compared: its numbers are rounded copies of the compared ones.
"""

from __future__ import annotations

import math
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from grpo_amp.io import InputError, atomic_path, read_csv, write_csv, write_text
from grpo_amp.runs import PRACTICE_POLICIES
from grpo_amp.schema import CLAIM_COLUMNS, RUN_COLUMNS

COMMAND_FILE = "COMMAND.txt"
BENCHMARKS_FILE = "benchmarks.csv"
SUMMARY_FILES = ("claims.csv", "claims.md", "runs.csv")  # copied as they are
REQUIRED_PUBLISHED = ("claims.csv", "runs.csv", COMMAND_FILE)
FIGURES_DIR = "figures"


@dataclass(frozen=True)
class Tolerance:
    absolute: float
    relative: float = 0.0  # 0: absolute only

    def allows(self, fresh: float, published: float) -> bool:
        if math.isnan(fresh) or math.isnan(published):
            return math.isnan(fresh) and math.isnan(published)
        if math.isinf(fresh) or math.isinf(published):
            return fresh == published
        diff = abs(fresh - published)
        return diff <= self.absolute or diff <= self.relative * abs(published)

    def describe(self) -> str:
        rel = f" or {self.relative:.0%}" if self.relative else ""
        return f"{self.absolute:g}{rel}"


# The table of the module docstring.
TOLERANCES = {
    "exact": Tolerance(absolute=1e-6),
    "practice": Tolerance(absolute=0.02, relative=0.10),
}
CLAIM_KEY = ["claim", "policy"]
CLAIM_EXACT = ["verdict", "metric"]
CLAIM_NUMBERS = ["value", "tolerance"]
RUN_KEY = ["policy", "run"]
SETTING_COLUMNS = ["variant", "sweep", "norm", "kl", "beta", "beta_prev", "eps", "std", "group_size",
                   "inner_steps", "clip_eps", "kl_estimator", "iterations"]
RUN_NUMBERS = [c for c in RUN_COLUMNS if c not in RUN_KEY and c not in SETTING_COLUMNS]


def tolerance_for(policy: str) -> Tolerance:
    return TOLERANCES["practice" if policy in PRACTICE_POLICIES else "exact"]


@dataclass(frozen=True)
class Comparison:
    """One line of claims.csv or runs.csv: reproduced, or how it differs."""
    table: str   # "claims" | "runs"
    key: tuple   # (claim, policy) or (policy, run)
    problems: tuple[str, ...]

    @property
    def reproduced(self) -> bool:
        return not self.problems

    def line(self) -> str:
        status = "reproduced" if self.reproduced else f"differs ({'; '.join(self.problems)})"
        return f"{self.table:<6}  {'  '.join(f'{k:<14}' for k in self.key)}  {status}"


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _same_setting(a, b) -> bool:
    if pd.isna(a) and pd.isna(b):
        return True
    fa, fb = _number(a), _number(b)
    if not (math.isnan(fa) or math.isnan(fb)):
        return fa == fb
    return str(a) == str(b)


def _compare_row(fresh: pd.Series, published: pd.Series, exact: list[str], numbers: list[str],
                 tol: Tolerance) -> list[str]:
    problems = []
    for col in exact:
        if not _same_setting(fresh[col], published[col]):
            problems.append(f"{col} {published[col]} -> {fresh[col]}")
    for col in numbers:
        f, p = _number(fresh[col]), _number(published[col])
        if not tol.allows(f, p):
            by = abs(f - p) if not (math.isnan(f) or math.isnan(p)) else math.nan
            what = f"by {by:.3g}" if not math.isnan(by) else f"{p:g} -> {f:g}"
            problems.append(f"{col} {what}; tolerance {tol.describe()}")
    return problems


def _compare_table(name: str, fresh: pd.DataFrame, published: pd.DataFrame, key: list[str],
                   exact: list[str], numbers: list[str]) -> list[Comparison]:
    fresh_rows = {tuple(str(v) for v in row[key]): row for _, row in fresh.iterrows()}
    pub_rows = {tuple(str(v) for v in row[key]): row for _, row in published.iterrows()}
    out = []
    for k, pub in pub_rows.items():
        if k not in fresh_rows:
            out.append(Comparison(name, k, ("missing from the fresh run",)))
            continue
        policy = k[key.index("policy")]
        out.append(Comparison(name, k, tuple(_compare_row(fresh_rows[k], pub, exact, numbers,
                                                          tolerance_for(policy)))))
    out += [Comparison(name, k, ("not in the published run",)) for k in fresh_rows if k not in pub_rows]
    return out


def _require(directory: Path, names) -> None:
    if not directory.is_dir():
        raise InputError(f"missing directory: {directory}")
    for name in names:
        if not (directory / name).is_file():
            raise InputError(f"missing input file: {directory / name}")


def compare_published(run_dir: str | Path, published_dir: str | Path) -> list[Comparison]:
    """Every line of the published claims.csv and runs.csv against the fresh run's."""
    run_dir, published_dir = Path(run_dir), Path(published_dir)
    _require(run_dir, ("claims.csv", "runs.csv"))
    _require(published_dir, REQUIRED_PUBLISHED)
    out = _compare_table("claims", read_csv(run_dir / "claims.csv", CLAIM_COLUMNS),
                         read_csv(published_dir / "claims.csv", CLAIM_COLUMNS),
                         CLAIM_KEY, CLAIM_EXACT, CLAIM_NUMBERS)
    out += _compare_table("runs", read_csv(run_dir / "runs.csv", RUN_COLUMNS),
                          read_csv(published_dir / "runs.csv", RUN_COLUMNS),
                          RUN_KEY, SETTING_COLUMNS, RUN_NUMBERS)
    return out


def published_command(published_dir: str | Path) -> str:
    """The command line of COMMAND.txt (its first line that is not a comment)."""
    text = (Path(published_dir) / COMMAND_FILE).read_text()
    return next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")), "")


def format_report(comparisons: list[Comparison], published_dir: str | Path) -> str:
    n_ok = sum(c.reproduced for c in comparisons)
    lines = [f"published run: {published_dir}", f"made by: {published_command(published_dir)}", ""]
    lines += [c.line() for c in comparisons]
    lines += ["", f"{n_ok} of {len(comparisons)} reproduced"
                  + ("" if n_ok == len(comparisons) else f"; {len(comparisons) - n_ok} differ")]
    return "\n".join(lines)


def check_published(run_dir: str | Path, published_dir: str | Path) -> tuple[bool, str]:
    """(all reproduced?, the printed report)."""
    comparisons = compare_published(run_dir, published_dir)
    return all(c.reproduced for c in comparisons), format_report(comparisons, published_dir)


# --------------------------------------------------------------------------- publish
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


def _provenance() -> list[str]:
    from grpo_amp import __version__

    lines = [f"# grpo-amp {__version__}, Python {platform.python_version()}, {platform.platform()}"]
    try:
        import torch

        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        lines.append(f"# torch {torch.__version__}, {cuda}")
    except Exception:  # provenance is a courtesy: never fail a publish over it
        pass
    return lines


def publish(run_dir: str | Path, published_dir: str | Path, command: str) -> list[Path]:
    """Copy a run's summary files into ``published_dir`` (see the module docstring); the paths written."""
    run_dir, published_dir = Path(run_dir), Path(published_dir)
    if not command.strip():
        raise InputError("--command must give the command line that made the run")
    _require(run_dir, SUMMARY_FILES)
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
    write_text("\n".join([command.strip(), *_provenance()]) + "\n", published_dir / COMMAND_FILE)
    return written + [published_dir / BENCHMARKS_FILE, published_dir / COMMAND_FILE]
