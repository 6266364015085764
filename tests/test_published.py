"""``check-published`` on hand-made claims.csv/runs.csv pairs: one outcome per case.

Each case writes a published directory and a fresh run directory by hand (old files without
interval columns, new ones with ``X_lo``/``X_hi``), so every status and check is exercised
without a pipeline run.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from grpo_amp.release import published
from grpo_amp.cli import main
from grpo_amp.schema import CLAIM_COLUMNS, RUN_COLUMNS

METRIC = "mean |p_n - predicted|"


def claim(claim_id="C3", policy="tabular_sgd", value=0.10, tolerance=0.05, verdict="holds", metric=METRIC,
          interval=None, n_seeds=None) -> dict:
    row = dict(claim=claim_id, policy=policy, verdict=verdict, metric=metric, value=value, tolerance=tolerance,
               evidence="free text, not compared")
    if interval is not None:
        row.update(value_lo=interval[0], value_hi=interval[1], n_seeds=n_seeds or 3)
    return row


def run(policy="tabular_sgd", name="mean_std_ref", final=0.80, interval=None, beta=1.0, kl_estimator="full_vocab",
        **numbers) -> dict:
    row = {c: math.nan if c.endswith(("_lo", "_hi")) else 0.0 for c in RUN_COLUMNS}  # NaN bounds: no interval
    row.update(policy=policy, run=name, variant="mean_std_ref", sweep="variant", norm="mean_std", kl="ref",
               beta=beta, std="population", group_size=8, inner_steps=4, clip_eps=math.nan,
               kl_estimator=kl_estimator, iterations=5, final_pos_mean=final, **numbers)
    if interval is not None:
        row.update(final_pos_mean_lo=interval[0], final_pos_mean_hi=interval[1])
    return row


def write(directory, claims: list[dict], runs: list[dict], command: str | None = "snakemake --cores 2"):
    directory.mkdir(parents=True, exist_ok=True)
    cols = list(dict.fromkeys([*CLAIM_COLUMNS, *(k for r in claims for k in r)]))
    pd.DataFrame(claims, columns=cols).to_csv(directory / "claims.csv", index=False)
    cols = list(dict.fromkeys([*RUN_COLUMNS, *(k for r in runs for k in r)]))
    pd.DataFrame(runs, columns=cols).to_csv(directory / "runs.csv", index=False)
    if command is not None:
        (directory / "COMMAND.txt").write_text(f"{command}\n# commit 0000000\n")
    return directory


def compare(tmp_path, pub_claims, pub_runs, fresh_claims, fresh_runs):
    pub = write(tmp_path / "pub", pub_claims, pub_runs)
    fresh = write(tmp_path / "fresh", fresh_claims, fresh_runs, command=None)
    return {(c.table, c.key): c for c in published.compare_published(fresh, pub)}, fresh, pub


def only(comparisons, table="claims"):
    (c,) = [c for (t, _), c in comparisons.items() if t == table]
    return c


# --------------------------------------------------------------------------- seed intervals
@pytest.mark.parametrize("fresh_value, fresh_interval, reproduced", [
    (0.14, None, True),              # inside the published [0.08, 0.15]
    (0.16, None, False),             # a point just outside it
    (0.17, (0.14, 0.20), True),      # outside, but its own interval reaches the published one
    (0.22, (0.16, 0.28), False),     # intervals apart
    (0.05, (0.04, 0.079), False),    # below, apart by 0.001
    (0.05, (0.04, 0.08), True),      # touching counts
])
def test_practice_values_are_judged_by_overlapping_seed_intervals(tmp_path, fresh_value, fresh_interval,
                                                                   reproduced):
    pub = [claim(value=0.11, interval=(0.08, 0.15))]
    fresh = [claim(value=fresh_value, interval=fresh_interval)]
    comps, _, _ = compare(tmp_path, pub, [run()], fresh, [run()])
    c = only(comps)
    assert c.checks == (published.CHECK_INTERVAL, published.CHECK_ROUND_OFF)  # value; tolerance: a threshold, not measured
    assert c.reproduced is reproduced
    assert c.status == ("reproduced" if reproduced else "moved")
    if not reproduced:
        assert c.problems[0].startswith("value ") and "outside published 0.11 [0.08, 0.15]" in c.problems[0]


def test_an_interval_wider_than_the_old_tolerance_passes_and_a_narrow_one_fails(tmp_path):
    """The same 0.05 move: inside a wide seed interval it reproduces, against a narrow one it moved,
    and the old files' 0.02-or-10% tolerance (no interval columns) calls it moved too."""
    wide = compare(tmp_path / "a", [claim(value=0.50, interval=(0.40, 0.60))], [run()],
                   [claim(value=0.55)], [run()])[0]
    narrow = compare(tmp_path / "b", [claim(value=0.50, interval=(0.49, 0.51))], [run()],
                     [claim(value=0.55)], [run()])[0]
    old = compare(tmp_path / "c", [claim(value=0.50)], [run()], [claim(value=0.55)], [run()])[0]
    assert only(wide).reproduced and not only(narrow).reproduced
    assert not only(old).reproduced and only(old).checks == (published.CHECK_TOLERANCE, published.CHECK_ROUND_OFF)
    assert "tolerance 0.02 or 10%" in only(old).problems[0]


def test_runs_intervals_per_column(tmp_path):
    pub = [run(final=0.80, interval=(0.75, 0.85))]
    comps, _, _ = compare(tmp_path, [claim()], pub, [claim()], [run(final=0.84, heldout_gain=0.0)])
    c = only(comps, "runs")
    assert c.reproduced and published.CHECK_INTERVAL in c.checks and published.CHECK_TOLERANCE in c.checks
    comps, _, _ = compare(tmp_path / "x", [claim()], pub, [claim()], [run(final=0.90)])
    assert only(comps, "runs").problems == (
        "final_pos_mean 0.9 [0.9, 0.9] outside published 0.8 [0.75, 0.85]",)


def test_a_single_seed_interval_falls_back_to_the_tolerance(tmp_path):
    """NaN bounds (one seed: no interval) are judged like an old file, and labelled so."""
    pub = [claim(value=0.30, interval=(math.nan, math.nan), n_seeds=1)]
    comps, _, _ = compare(tmp_path, pub, [run()], [claim(value=0.31)], [run()])
    assert only(comps).reproduced and only(comps).checks == (published.CHECK_TOLERANCE, published.CHECK_ROUND_OFF)


# --------------------------------------------------------------------------- the exact control
@pytest.mark.parametrize("delta, reproduced", [(0.0, True), (5e-9, True), (2e-7, False), (1e-6, False)])
def test_the_exact_control_is_judged_by_round_off(tmp_path, delta, reproduced):
    pub = [claim(policy="tabular_exact", value=0.25)]
    # an interval column on the exact control changes nothing: its kind is exact
    fresh = [claim(policy="tabular_exact", value=0.25 + delta, interval=(0.0, 1.0))]
    comps, _, _ = compare(tmp_path, pub, [run("tabular_exact")], fresh, [run("tabular_exact")])
    c = only(comps)
    assert c.checks == (published.CHECK_ROUND_OFF,)
    assert c.reproduced is reproduced
    if not reproduced:
        assert c.problems == (f"value 0.25 -> {0.25 + delta:.10g}; round-off 1e-07",)


# --------------------------------------------------------------------------- judged by how a number was made (issue 16)
@pytest.mark.parametrize("value, fresh, reproduced", [(0.7952, 0.7952 + 3e-9, True), (1.053, 1.075, True),
                                                       (3.017, 2.940, True), (1.053, 1.30, False)])
def test_a_zero_width_interval_is_never_the_test(tmp_path, value, fresh, reproduced):
    """A sampled policy's number whose published "interval" has zero width (a pooled statistic such as
    C1's noise ratio, or all seeds alike): issue 16 saw such rows "moved" by last digits against the
    zero-width interval. They get the check for sampled numbers without an interval (0.02 or 10%):
    the C1/E1 ratios of tabular_sgd moved 1.053 -> 1.075 and 3.017 -> 2.940 between AVX512 and AVX2."""
    pub = [claim(value=value, interval=(value, value))]
    fresh_row = [claim(value=fresh, interval=(fresh, fresh))]
    c = only(compare(tmp_path, pub, [run()], fresh_row, [run()])[0])
    assert c.checks == (published.CHECK_TOLERANCE, published.CHECK_ROUND_OFF)
    assert c.reproduced is reproduced


@pytest.mark.parametrize("pub_value, fresh_value, reproduced", [(1.382e-08, 1.386e-08, True), (1.924e-09, 1.339e-09, True),
                                                                (0.4, 0.4 + 1.9e-6, True), (0.4, 0.4 + 2.1e-6, False)])
def test_optimiser_numbers_reproduce_within_twice_the_argmax_tolerance(tmp_path, pub_value, fresh_value, reproduced):
    """R1/R2 (registry.OPTIMISER): each run is within grpo.argmax_tol (1e-6) of the exact maximiser, so
    two runs agree to 2e-6 (the first two cases are issue 16's: R1's and R2's C3 gaps on two machines)."""
    pub = [claim(policy="tabular_r1", value=pub_value)]
    fresh = [claim(policy="tabular_r1", value=fresh_value)]
    c = only(compare(tmp_path, pub, [run("tabular_r1")], fresh, [run("tabular_r1")])[0])
    assert c.checks == (published.CHECK_OPTIMISER, published.CHECK_ROUND_OFF)
    assert c.reproduced is reproduced


def test_how_a_number_was_made_follows_the_registry():
    assert published.how_made("tabular_exact") == "deterministic"
    assert published.how_made("tabular_r3") == "deterministic"   # M Adam steps on an exact objective: no draw
    assert published.how_made("tabular_r1") == "optimiser"
    assert published.how_made("tabular_r2") == "optimiser"
    assert published.how_made("tabular_sgd") == "sampled"
    assert published.how_made("transformer") == "sampled"
    assert published.how_made("transformer_r1") == "sampled"   # float32 L-BFGS stopped by a budget
    assert published.how_made("twin_r1") == "optimiser"


def test_claims_whose_measure_samples_groups_are_judged_as_sampled_for_every_policy(tmp_path):
    """C1/E1 draw their own groups even for an exact rung: twin_r1's C1 ratio moved 2e-5 between AVX512 and
    the unvectorised kernels (one sample flipped), far past round-off and inside sampling's tolerance,
    while the same policy's C3 value (no draw) is still held to the optimiser's 2e-6."""
    pub = [claim("C1", policy="twin_r1", value=1.0131, tolerance=1.5, interval=(1.0131, 1.0131)),
           claim("C3", policy="twin_r1", value=0.3)]
    fresh = [claim("C1", policy="twin_r1", value=1.0131 + 2e-5, tolerance=1.5, interval=(1.01312, 1.01312)),
             claim("C3", policy="twin_r1", value=0.3 + 2e-5)]
    comps, _, _ = compare(tmp_path, pub, [run("twin_r1")], fresh, [run("twin_r1")])
    c1 = comps[("claims", ("C1", "twin_r1"))]
    assert c1.reproduced and c1.checks == (published.CHECK_TOLERANCE, published.CHECK_ROUND_OFF)
    c3 = comps[("claims", ("C3", "twin_r1"))]
    assert not c3.reproduced and c3.checks == (published.CHECK_OPTIMISER, published.CHECK_ROUND_OFF)
    assert published.draws_groups("E1a") and published.draws_groups("E1b") and not published.draws_groups("C3_G")


@pytest.mark.parametrize("pub_verdict, fresh_verdict, fresh_value, tolerance, status, check", [
    ("holds", "inconclusive", 0.101, 0.05, "reproduced", "verdict at threshold"),  # the interval touches it
    ("inconclusive", "fails", 0.101, 0.05, "reproduced", "verdict at threshold"),
    ("holds", "fails", 0.101, 0.05, "verdict changed", None),        # both values on one side of 0.05
    ("fails", "holds", 0.104, 0.102, "reproduced", "verdict at threshold"),  # 0.10 and 0.104 straddle 0.102
    ("no power", "holds", 0.101, 0.05, "reproduced", "power at threshold"),  # a wrong theory's verdict moved
    ("holds", "inconclusive", 0.30, 0.05, "verdict changed", None),  # the number itself moved: no excuse
])
def test_a_verdict_at_its_threshold(tmp_path, pub_verdict, fresh_verdict, fresh_value, tolerance, status, check):
    """Issue 16: the unvectorised-kernel smoke run moved E1b of the twin from 1.459 (fails) to 1.504 (holds)
    against 1.5, and with it E1a's power (no power -> holds): thresholds, not the data, moved those verdicts."""
    pub = [claim(value=0.10, tolerance=tolerance, interval=(0.08, 0.12), verdict=pub_verdict)]
    fresh = [claim(value=fresh_value, tolerance=tolerance, interval=(fresh_value - 0.02, fresh_value + 0.02),
                   verdict=fresh_verdict)]
    c = only(compare(tmp_path, pub, [run()], fresh, [run()])[0])
    assert c.status == status
    if status == "reproduced":
        assert check in c.checks
    else:
        assert c.problems[0] == f"verdict {pub_verdict!r} -> {fresh_verdict!r}"


def test_nan_matches_only_nan(tmp_path):
    comps, _, _ = compare(tmp_path, [claim(value=math.nan), claim("C4", value=math.nan)], [run()],
                          [claim(value=math.nan), claim("C4", value=0.2)], [run()])
    assert comps[("claims", ("C3", "tabular_sgd"))].reproduced
    assert comps[("claims", ("C4", "tabular_sgd"))].problems == ("value nan -> 0.2",)


# --------------------------------------------------------------------------- text, verdict, rows
def test_a_changed_metric_text_is_reported_apart_from_moved_numbers(tmp_path):
    pub = [claim(value=0.10, interval=(0.09, 0.11))]
    fresh = [claim(value=0.30, metric="RMS |p_n - predicted|")]
    c = only(compare(tmp_path, pub, [run()], fresh, [run()])[0])
    assert c.status == "text changed"
    assert c.problems[0] == f"metric {METRIC!r} -> 'RMS |p_n - predicted|'"
    assert c.problems[1].startswith("value 0.3 ")  # the number that moved, listed beside


def test_a_changed_verdict_and_a_changed_setting(tmp_path):
    comps, _, _ = compare(tmp_path, [claim()], [run(beta=1.0)], [claim(verdict="fails")], [run(beta=2.0)])
    assert only(comps).status == "verdict changed" and only(comps).problems == ("verdict 'holds' -> 'fails'",)
    assert only(comps, "runs").status == "setting changed"
    assert only(comps, "runs").problems == ("beta 1.0 -> 2.0",)


def test_the_estimator_renamed_exact_to_full_vocab_is_not_a_changed_setting(tmp_path):
    """Runs published before the rename say kl_estimator=exact: the same setting as a fresh full_vocab,
    while a genuinely different estimator (k3) still reads as a changed setting."""
    comps, _, _ = compare(tmp_path, [claim()], [run(kl_estimator="exact")], [claim()], [run()])
    assert only(comps, "runs").reproduced
    comps, _, _ = compare(tmp_path / "k3", [claim()], [run(kl_estimator="exact")], [claim()],
                          [run(kl_estimator="k3")])
    assert only(comps, "runs").status == "setting changed"
    assert only(comps, "runs").problems == ("kl_estimator 'exact' -> 'k3'",)


def test_missing_and_extra_rows(tmp_path):
    comps, _, _ = compare(tmp_path, [claim("C3"), claim("C5")], [run()], [claim("C3"), claim("C6")], [run()])
    assert comps[("claims", ("C5", "tabular_sgd"))].status == "missing"
    assert comps[("claims", ("C6", "tabular_sgd"))].status == "extra"
    assert comps[("claims", ("C3", "tabular_sgd"))].reproduced


# --------------------------------------------------------------------------- the command line
def test_report_text_and_json(tmp_path, capsys):
    pub = write(tmp_path / "pub", [claim(value=0.10, interval=(0.08, 0.12)), claim("C5", policy="tabular_exact"),
                                   claim("C7")], [run()])
    fresh = write(tmp_path / "fresh", [claim(value=0.20), claim("C5", policy="tabular_exact")], [run()],
                  command=None)
    assert main(["check-published", str(fresh), str(pub)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "made by: snakemake --cores 2"
    line = next(ln for ln in out if ln.startswith("claims") and "C3" in ln)
    assert " moved (value 0.2 " in line and line.endswith("[seed interval, round-off 1e-07]")
    assert next(ln for ln in out if "C5" in ln).endswith("reproduced  [round-off 1e-07]")
    assert out[-1] == "2 of 4 reproduced; 1 missing, 1 moved"

    assert main(["check-published", str(fresh), str(pub), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["reproduced"] is False and report["n_lines"] == 4
    assert report["counts"] == {"missing": 1, "moved": 1, "reproduced": 2}
    by_key = {(ln["table"], tuple(ln["key"].values())): ln for ln in report["lines"]}
    assert by_key[("claims", ("C3", "tabular_sgd"))]["checks"][0] == "seed interval"
    assert by_key[("claims", ("C7", "tabular_sgd"))]["status"] == "missing"
    assert by_key[("runs", ("tabular_sgd", "mean_std_ref"))]["reproduced"] is True


def test_every_line_reproduced_exits_0(tmp_path, capsys):
    pub = write(tmp_path / "pub", [claim(interval=(0.0, 0.2))], [run(interval=(0.7, 0.9))])
    fresh = write(tmp_path / "fresh", [claim(value=0.12)], [run(final=0.81)], command=None)
    assert main(["check-published", str(fresh), str(pub)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 of 2 reproduced"
