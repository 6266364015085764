"""Published runs: the published directory's layout, and ``check-published``'s comparison of a fresh run with it.

    grpo-amp check-published results/smoke results/published/<machine>/smoke

(``publish``, which writes the directory and its provenance, is ``grpo_amp.release.publish``.)

A published directory (``results/published/<machine>/<scale>/``) holds what ``publish`` copies
from ``results/<scale>/``: ``claims.csv``, ``claims.md``, ``runs.csv``, ``figures/*.png``,
``benchmarks.csv`` (every job's Snakemake benchmark TSV in one table), ``pip-freeze.txt`` (``pip
freeze`` of the interpreter that publishes) and ``COMMAND.txt``: the command that made the run,
then ``#`` lines: the full hash of the commit whose code made the numbers (HEAD of this checkout,
and whether tracked files outside ``results/`` differ from it: publish from a clean tree), the
versions, the machine (platform, CPU count), the thread count of each rule and the wall time per
rule summed from the benchmark files. Publish from the checkout and interpreter that ran.

``check-published`` compares ``claims.csv`` (one line per claim and policy) and ``runs.csv`` (one
line per policy and run) of a fresh run with the published ones and prints, per line, its status
and the check its numbers used; it exits 1 unless every line is ``reproduced`` (``--json``: one
JSON object for tooling). Statuses, the first that applies naming the line:

- ``missing`` (published only), ``extra`` (fresh only);
- ``text changed``: a claim's ``metric`` text differs; ``verdict changed``: its verdict;
  ``setting changed``: a run's settings (``SETTING_COLUMNS``: variant, norm, kl, beta, ..., iterations);
  a renamed value (``RENAMED_SETTINGS``: kl_estimator exact -> full_vocab) matches its new name;
  the numbers that moved on the same line are listed beside;
- ``moved``: a number (a claim's ``value`` and ``tolerance``; a run's ``final_pos_mean``,
  ``gap_*``, ``heldout_gain``, ``beta_eff``, ...) fails its check. Each number is judged by how it
  was made (issue 16: on another machine torch's vectorised kernels and the thread count change the
  last digits of softmax, log and exp, and nothing else):

  ==================================  ===========================================================
  check                               used for, and when a number passes
  ==================================  ===========================================================
  ``round-off 1e-7``                  numbers made without sampling: the closed-form control and
                                      every policy that draws nothing (``registry``: not
                                      ``sampled``, not an optimiser, a float64 table) and the
                                      thresholds (``tolerance``):
                                      ``|fresh - pub| <= 1e-7 max(1, |pub|)`` (measured across
                                      kernels: up to 4e-9 relative, where a fit or a root-find
                                      amplifies last-digit differences; tests/test_reproducibility)
  ``optimiser 1e-6``                  R1/R2's numerical maximisers (``registry.OPTIMISER``): each
                                      run is within ``grpo.argmax_tol`` of the exact maximiser, so
                                      two runs reproduce when ``|fresh - pub| <= 2 argmax_tol``
  ``log-odds fit 1e-3``               the shape test's slope and R^2 of a policy that draws
                                      nothing: a fit on logit(p), where p within 1e-12 of 1 turns
                                      last digits into 1e-4 relative: ``|fresh - pub| <= 1e-3 max(1, |pub|)``
  ``seed interval``                   sampled policies where the published line has ``X_lo``,
                                      ``X_hi`` for the number ``X`` (its seed interval; claims.csv:
                                      ``value_lo``, ``value_hi``, ``n_seeds``): the fresh value lies
                                      inside the published interval widened by the fresh run's own
                                      half-widths, i.e. the two intervals overlap (a fresh file
                                      without intervals counts as the point ``[X, X]``)
  ``tolerance 0.02 or 10%``           sampled numbers with no published interval, or one of zero
                                      width (a pooled statistic such as C1's noise ratio, a single
                                      seed, files from before the interval columns; a zero-width
                                      interval is never the test): ``|fresh - pub| <= 0.02`` or
                                      ``<= 10 % of |pub|``
  ==================================  ===========================================================

  Two NaNs (a summary the run has no data for) are equal; NaN against a number moved. The report
  names, per line, the checks its numbers used.

  How a number was made is the policy's (``how_made``), except for claims whose measure samples its
  own groups (``criteria.draws_groups``: C1, E1a, E1b): their values are sampled for every policy,
  the exact rungs' included (measured: C1 of twin_r1/twin_r2 moved 2e-5 between AVX512 and the
  unvectorised kernels, as one sample flipped).

A changed verdict on a row whose numbers passed their checks is ``reproduced`` when the change is
the threshold's, not the data's, and the report names the check, so a reader sees the row is not
decided by its data (measured: the unvectorised-kernel smoke run moved C1's pooled ratio for E1b of
the twin from 1.459 to 1.504 against 1.5):

- ``verdict at threshold``: one side is ``inconclusive`` (its interval touches the tolerance), or
  ``holds`` <-> ``fails`` where the tolerance lies between the published and the fresh value (the
  two values straddle it, each within the number check of the other);
- ``power at threshold``: ``holds`` <-> ``no power``: the row's own numbers reproduce, and what
  moved is a wrong theory's own verdict at its threshold (the power count).

Any other change of verdict (``holds`` <-> ``fails`` with both values on one side of the tolerance)
is ``verdict changed``.

``evidence`` (free text) is not compared: its numbers are rounded copies of the compared ones.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from grpo_amp import registry
from grpo_amp.analysis.claims.criteria import draws_groups
from grpo_amp.config import GRPOConfig
from grpo_amp.io import InputError, read_csv
from grpo_amp.schema import CLAIM_COLUMNS, RUN_COLUMNS, RUN_SETTINGS

COMMAND_FILE = "COMMAND.txt"
BENCHMARKS_FILE = "benchmarks.csv"
SUMMARY_FILES = ("claims.csv", "claims.md", "runs.csv", "ladder.csv", "factorial.csv", "attribution.csv",
                 "draws.csv")  # copied as they are (check-published compares claims.csv and runs.csv only)
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


# The fallback for sampled numbers without interval columns (the module docstring's last check).
PRACTICE_TOLERANCE = Tolerance(absolute=0.02, relative=0.10)
# numbers made without sampling: |fresh - pub| <= 1e-7 max(1, |pub|). AVX2 vs AVX512 kernels moved them by
# up to 3.7e-9 relative on the smoke study (R3's beta_eff fit; the transformer's predicted limit 1.6e-9):
# 25x margin, and still far below what a change of code or config moves.
ROUND_OFF_RELATIVE = 1e-7
LO, HI = "_lo", "_hi"  # a value column X has its seed interval in X_lo, X_hi
CHECK_ROUND_OFF = f"round-off {ROUND_OFF_RELATIVE:g}"
CHECK_OPTIMISER = f"optimiser {GRPOConfig().argmax_tol:g}"
CHECK_INTERVAL = "seed interval"
CHECK_TOLERANCE = "tolerance 0.02 or 10% (no interval)"
CHECK_AT_THRESHOLD = "verdict at threshold"
CHECK_POWER_AT_THRESHOLD = "power at threshold"
UNDECIDED, HOLDS, FAILS, NO_POWER = "inconclusive", "holds", "fails", "no power"
CLAIM_KEY = ["claim", "policy"]
CLAIM_EXACT = ["verdict", "criterion", "metric"]  # power ("k/n rejected") follows from the data, like evidence
CLAIM_NUMBERS = ["value", "tolerance"]
CONFIGURED_NUMBERS = {"tolerance"}  # a threshold from the code, not a measurement: judged by round-off
# fits on log-odds (the shape test): logit(p) near p = 1 turns last-digit changes of p into 1e-4 relative
# changes of the fit (measured between AVX512 and AVX2: R2's dapo run's slope 0.993677 -> 0.993364)
# beta_eff (E4's fit of an effective beta to the trajectory) amplifies them alike (measured: twin_r2's moved
# by more than 2 argmax_tol between AVX512 and the unvectorised kernels)
LOG_ODDS_FITS = {"shape_slope", "shape_r2", "beta_eff"}
LOG_ODDS_RELATIVE = 1e-3
CHECK_LOG_ODDS = f"log-odds fit {LOG_ODDS_RELATIVE:g}"
RUN_KEY = ["policy", "run"]
SETTING_COLUMNS = [*RUN_SETTINGS, "n_seeds"]
# the compared numbers: each summary X (its X_lo, X_hi are the interval it is judged by, not numbers of their own)
RUN_NUMBERS = [c for c in RUN_COLUMNS if c not in RUN_KEY and c not in SETTING_COLUMNS and not c.endswith((LO, HI))]
# what a line's status is, worst first: the first that applies names the line
STATUSES = ("missing", "extra", "text changed", "verdict changed", "setting changed", "moved", "reproduced")
CHANGE_STATUS = {"metric": "text changed", "criterion": "text changed", "verdict": "verdict changed"}  # any other exact column: a setting
# settings renamed since a run was published (old value -> new): a pure rename is not a changed setting
RENAMED_SETTINGS = {"kl_estimator": {"exact": "full_vocab"}}  # grpo.kl_estimator exact -> full_vocab


def how_made(policy: str) -> str:
    """How a policy's numbers are made: "sampled" (judged by seed intervals), "optimiser" (R1/R2:
    within grpo.argmax_tol of an exact maximiser) or "deterministic" (no draw, float64 tables: round-off).

    A transformer policy that draws nothing (transformer_r1/r2: L-BFGS over float32 parameters, stopped
    by its budget, not a certificate) is "sampled": another machine's last bits grow along its path
    (measured: its C2 value moved 1% between AVX512 and AVX2), so it is judged like a sampled number.
    """
    spec = registry.POLICIES.get(policy)
    if spec is None or spec.sampled:
        return "sampled"
    if spec.tolerance == registry.OPTIMISER:
        return "optimiser"
    tables = registry.FAMILIES[spec.family].seeds_as_rows  # tabular, twin: float64 tables
    return "deterministic" if tables or spec.tolerance == registry.ROUNDOFF else "sampled"


def _round_off(fresh: float, published: float) -> bool:
    return abs(fresh - published) <= ROUND_OFF_RELATIVE * max(1.0, abs(published))


@dataclass(frozen=True)
class Comparison:
    """One line of claims.csv or runs.csv: reproduced, or how it differs, and the checks it used."""
    table: str   # "claims" | "runs"
    key: tuple   # (claim, policy) or (policy, run)
    problems: tuple[str, ...]
    status: str = "reproduced"  # one of STATUSES
    checks: tuple[str, ...] = ()  # the number checks used on this line (CHECK_*)

    @property
    def reproduced(self) -> bool:
        return not self.problems

    def line(self) -> str:
        status = self.status if self.reproduced else f"{self.status} ({'; '.join(self.problems)})"
        checks = f"  [{', '.join(self.checks)}]" if self.checks else ""
        return f"{self.table:<6}  {'  '.join(f'{k:<14}' for k in self.key)}  {status}{checks}"

    def to_json(self, key_names: list[str]) -> dict:
        return {"table": self.table, "key": dict(zip(key_names, self.key)), "status": self.status,
                "reproduced": self.reproduced, "checks": list(self.checks), "problems": list(self.problems)}


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


def _interval(row: pd.Series, col: str) -> tuple[float, float] | None:
    """(lo, hi) of ``col`` where the row has both, finite; None otherwise (old file, single seed)."""
    if col + LO not in row.index or col + HI not in row.index:
        return None
    lo, hi = _number(row[col + LO]), _number(row[col + HI])
    if math.isnan(lo) or math.isnan(hi):
        return None
    return lo, hi


def _check_number(fresh: pd.Series, published: pd.Series, col: str, made: str) -> tuple[str, str | None]:
    """(the check used, a problem or None) for one number of one line; ``made`` is ``how_made``'s."""
    f, p = _number(fresh[col]), _number(published[col])
    pub = _interval(published, col)
    if col in CONFIGURED_NUMBERS:
        made = "deterministic"  # a threshold from the code, not a measurement
    elif made == "sampled" and pub is not None and pub[0] == pub[1]:
        pub = None  # a zero-width "interval" (a pooled statistic such as C1's, or one seed) is never the test
    check = {"deterministic": CHECK_ROUND_OFF, "optimiser": CHECK_OPTIMISER}.get(
        made, CHECK_INTERVAL if pub is not None else CHECK_TOLERANCE)
    if math.isnan(f) or math.isnan(p):  # a summary with no data: only NaN matches NaN
        return check, None if (math.isnan(f) and math.isnan(p)) else f"{col} {p:g} -> {f:g}"
    if math.isinf(f) or math.isinf(p):
        return check, None if f == p else f"{col} {p:g} -> {f:g}"
    if col in LOG_ODDS_FITS and made != "sampled":
        ok = abs(f - p) <= LOG_ODDS_RELATIVE * max(1.0, abs(p))
        return CHECK_LOG_ODDS, None if ok else f"{col} {p:.6g} -> {f:.6g}; {CHECK_LOG_ODDS}"
    if made == "deterministic":
        return check, None if _round_off(f, p) else f"{col} {p:.10g} -> {f:.10g}; {check}"
    if made == "optimiser":
        tol = 2 * GRPOConfig().argmax_tol  # each run within argmax_tol of the same exact maximiser
        return check, None if abs(f - p) <= tol or _round_off(f, p) else f"{col} {p:.6g} -> {f:.6g}; {check}"
    if pub is None:
        ok = PRACTICE_TOLERANCE.allows(f, p)
        return check, None if ok else f"{col} by {abs(f - p):.3g}; tolerance {PRACTICE_TOLERANCE.describe()}"
    fr = _interval(fresh, col) or (f, f)
    # inside the published interval widened by the fresh one's half-widths <=> the two overlap
    ok = fr[0] <= pub[1] and pub[0] <= fr[1]
    return check, None if ok else (f"{col} {f:.4g} [{fr[0]:.4g}, {fr[1]:.4g}] outside published "
                                   f"{p:.4g} [{pub[0]:.4g}, {pub[1]:.4g}]")


def _threshold_check(fresh: pd.Series, published: pd.Series) -> str | None:
    """The check by which a changed verdict is the threshold's (module docstring), or None: a change."""
    pair = {str(fresh["verdict"]), str(published["verdict"])}
    if UNDECIDED in pair:
        return CHECK_AT_THRESHOLD
    if pair == {HOLDS, NO_POWER}:
        return CHECK_POWER_AT_THRESHOLD
    if pair in ({HOLDS, FAILS}, {NO_POWER, FAILS}):
        f, p, tol = _number(fresh["value"]), _number(published["value"]), _number(published["tolerance"])
        if min(f, p) <= tol <= max(f, p):
            return CHECK_AT_THRESHOLD
    return None


def _compare_row(fresh: pd.Series, published: pd.Series, exact: list[str], numbers: list[str],
                 made: str) -> tuple[str, list[str], list[str]]:
    """(status, problems, checks) of one line present on both sides: a changed text, verdict or
    setting is named as such, before (and beside) the numbers that moved."""
    changed: dict[str, list[str]] = {}
    moved, checks = [], []
    for col in numbers:
        check, problem = _check_number(fresh, published, col, made)
        if check not in checks:
            checks.append(check)
        if problem is not None:
            moved.append(problem)
    for col in exact:
        renamed = RENAMED_SETTINGS.get(col, {})
        if _same_setting(fresh[col], renamed.get(published[col], published[col])):
            continue
        at_threshold = _threshold_check(fresh, published) if col == "verdict" and not moved else None
        if at_threshold is not None:
            checks.append(at_threshold)  # the module docstring: the threshold's change, not the data's
            continue
        changed.setdefault(CHANGE_STATUS.get(col, "setting changed"), []).append(
            f"{col} {published[col]!r} -> {fresh[col]!r}")
    if moved:
        changed["moved"] = moved
    status = next((st for st in STATUSES if st in changed), "reproduced")
    return status, [p for st in STATUSES if st in changed for p in changed[st]], checks


def _compare_table(name: str, fresh: pd.DataFrame, published: pd.DataFrame, key: list[str],
                   exact: list[str], numbers: list[str]) -> list[Comparison]:
    fresh_rows = {tuple(str(v) for v in row[key]): row for _, row in fresh.iterrows()}
    pub_rows = {tuple(str(v) for v in row[key]): row for _, row in published.iterrows()}
    out = []
    for k, pub in pub_rows.items():
        if k not in fresh_rows:
            out.append(Comparison(name, k, ("missing from the fresh run",), "missing"))
            continue
        made = how_made(k[key.index("policy")])
        if "claim" in key and draws_groups(k[key.index("claim")]):
            made = "sampled"
        status, problems, checks = _compare_row(fresh_rows[k], pub, exact, numbers, made)
        out.append(Comparison(name, k, tuple(problems), status, tuple(checks)))
    out += [Comparison(name, k, ("not in the published run",), "extra") for k in fresh_rows if k not in pub_rows]
    return out


def require_files(directory: Path, names) -> None:
    if not directory.is_dir():
        raise InputError(f"missing directory: {directory}")
    for name in names:
        if not (directory / name).is_file():
            raise InputError(f"missing input file: {directory / name}")


def compare_published(run_dir: str | Path, published_dir: str | Path) -> list[Comparison]:
    """Every line of the published claims.csv and runs.csv against the fresh run's."""
    run_dir, published_dir = Path(run_dir), Path(published_dir)
    require_files(run_dir, ("claims.csv", "runs.csv"))
    require_files(published_dir, REQUIRED_PUBLISHED)
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


def _counts(comparisons: list[Comparison]) -> dict[str, int]:
    return {st: n for st in STATUSES if (n := sum(c.status == st for c in comparisons))}


def format_report(comparisons: list[Comparison], published_dir: str | Path) -> str:
    n_ok = sum(c.reproduced for c in comparisons)
    lines = [f"published run: {published_dir}", f"made by: {published_command(published_dir)}", ""]
    lines += [c.line() for c in comparisons]
    counts = ", ".join(f"{n} {st}" for st, n in _counts(comparisons).items() if st != "reproduced")
    lines += ["", f"{n_ok} of {len(comparisons)} reproduced" + (f"; {counts}" if counts else "")]
    return "\n".join(lines)


def report_json(comparisons: list[Comparison], published_dir: str | Path) -> dict:
    """The report as one JSON object (``check-published --json``)."""
    keys = {"claims": CLAIM_KEY, "runs": RUN_KEY}
    return {"published_dir": str(published_dir), "command": published_command(published_dir),
            "reproduced": all(c.reproduced for c in comparisons), "n_lines": len(comparisons),
            "counts": _counts(comparisons), "lines": [c.to_json(keys[c.table]) for c in comparisons]}


def check_published(run_dir: str | Path, published_dir: str | Path, as_json: bool = False) -> tuple[bool, str]:
    """(all reproduced?, the printed report: text, or JSON with ``as_json``)."""
    comparisons = compare_published(run_dir, published_dir)
    ok = all(c.reproduced for c in comparisons)
    if as_json:
        return ok, json.dumps(report_json(comparisons, published_dir), indent=2)
    return ok, format_report(comparisons, published_dir)
