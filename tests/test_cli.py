"""``grpo-amp`` as a user runs it, numbers checked against the theory.

The main paths run as real subprocesses (``python -m grpo_amp.cli`` and the installed console
script). Each one spends about a second importing numpy/scipy/pandas, so they are listed in RUNS and
started together in one module fixture; the long tail of bad values runs in process through
``main(argv)``, which is the same code path minus the interpreter start.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from grpo_amp import theory
from grpo_amp.bench import BENCHMARKS, benchmark, run_benchmark
from grpo_amp.bench.timing import Timing, format_timings
from grpo_amp.cli import build_parser, main

MODULE = [sys.executable, "-m", "grpo_amp.cli"]
SCRIPT = shutil.which("grpo-amp", path=str(Path(sys.executable).parent))
BASE = ["predict", "--p-ref", "0.2", "--beta", "1"]

# Values the theory rejects: (arguments after BASE, the argument the one-line message names).
BAD_INPUT = [
    (["--beta", "0"], "beta"),
    (["--beta", "-1"], "beta"),
    (["--p-ref", "1.5"], "p_ref"),
    (["--p-ref", "-0.1"], "p_ref"),
    (["--p-ref", "nan"], "p_ref"),
    (["--kl", "forward"], "kl"),
    (["--norm", "std_only"], "norm"),
    (["--std", "biased", "--group-size", "8"], "std"),
    (["--group-size", "1"], "group_size"),
    (["--group-size", "1.5"], "group_size"),
    (["--kl", "both"], "beta_prev"),
    (["--kl", "both", "--beta-prev", "-2"], "beta_prev"),
    (["--eps", "-1"], "eps"),
    (["--iters", "-1"], "n_iters"),
]
BAD_IDS = [" ".join(extra) for extra, _ in BAD_INPUT]
BAD_IN_SUBPROCESS = {"--beta 0", "--p-ref nan"}

RUNS = {
    "table": ["predict", "--p-ref", "0.2", "--beta", "1", "--kl", "ref", "--norm", "mean_std", "--iters", "10"],
    "json_ref": [*BASE, "--iters", "10", "--json"],
    "json_both": ["predict", "--p-ref", "0.02", "--beta", "0.5", "--kl", "both", "--beta-prev", "5",
                  "--iters", "4", "--json"],
    "bench_unknown": ["bench", "nonesuch"],
    "malformed": ["predict", "--beta", "1"],  # --p-ref missing
    **{f"bad {i}": [*BASE, *extra] for i, (extra, _) in zip(BAD_IDS, BAD_INPUT) if i in BAD_IN_SUBPROCESS},
}


def _run(args: list[str], command: list[str] = MODULE) -> subprocess.CompletedProcess:
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def runs() -> dict[str, subprocess.CompletedProcess]:
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {name: pool.submit(_run, args) for name, args in RUNS.items()}
        if SCRIPT is not None:
            futures["script"] = pool.submit(_run, ["predict", "--p-ref", "0.5", "--beta", "1", "--json"], [SCRIPT])
        return {name: future.result() for name, future in futures.items()}


def ok_stdout(runs, name: str) -> str:
    proc = runs[name]
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def ok_json(runs, name: str) -> dict:
    return json.loads(ok_stdout(runs, name))


def in_process(capsys, *argv: str) -> tuple[int, str, str]:
    """main(argv) as the console script calls it: (exit status, stdout, stderr)."""
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = exc.code
    out = capsys.readouterr()
    return status, out.out, out.err


def in_process_json(capsys, *argv: str) -> dict:
    status, out, err = in_process(capsys, *argv, "--json")
    assert status == 0 and err == "", err
    return json.loads(out)


# --------------------------------------------------------------------------- predict, table
def test_table_trajectory_rows(runs):
    table = ok_stdout(runs, "table")
    rows = re.findall(r"^\s*(\d+)\s+([0-9.]+)\s+([+-][0-9.]+|[+-]inf)\s*$", table, re.M)
    assert [int(n) for n, _, _ in rows] == list(range(11))
    expected = theory.pos_recurrence(0.2, 10, kl="ref", beta=1.0)
    np.testing.assert_allclose([float(p) for _, p, _ in rows], expected, atol=5e-7)
    np.testing.assert_allclose([float(x) for _, _, x in rows], theory.logit(expected), atol=5e-5)


def test_table_fixed_points_and_limit(runs):
    table = ok_stdout(runs, "table")
    fps = re.findall(r"^\s*([0-9.]+)\s+([+-][0-9.]+)\s+(attracting|repelling)\s*$", table, re.M)
    assert [(round(float(p), 4), s) for p, _, s in fps] == [
        (0.6813, "attracting"), (0.9347, "repelling"), (1.0, "attracting")]
    assert float(fps[0][1]) == pytest.approx(0.39, abs=0.005)
    assert float(fps[1][1]) == pytest.approx(1.76, abs=0.005)
    limit = re.search(r"predicted limit from p_ref: ([0-9.]+)", table)
    assert float(limit.group(1)) == pytest.approx(0.6813, abs=5e-5)


def test_table_mirror_says_no_fixed_point_below_one(capsys):
    status, out, err = in_process(capsys, "predict", "--p-ref", "0.2", "--beta", "1", "--kl", "mirror", "--iters", "3")
    assert status == 0 and err == ""
    assert "none below 1" in out
    assert re.search(r"predicted limit from p_ref: 1\.000000", out)


# --------------------------------------------------------------------------- predict, JSON
def test_json_ref_matches_theory(runs):
    out = ok_json(runs, "json_ref")
    assert set(out) == {"trajectory", "fixed_points", "limit"}
    np.testing.assert_allclose(out["trajectory"], theory.pos_recurrence(0.2, 10, beta=1.0), rtol=1e-12)
    assert [fp["attracting"] for fp in out["fixed_points"]] == [True, False, True]
    expected = theory.fixed_points(0.2, 1.0)
    np.testing.assert_allclose([fp["p"] for fp in out["fixed_points"]], [fp.p for fp in expected], rtol=1e-12)
    np.testing.assert_allclose([fp["slope"] for fp in out["fixed_points"]], [fp.slope for fp in expected],
                               rtol=1e-9)
    assert out["limit"] == pytest.approx(0.6813, abs=5e-5)


def test_json_both_c6_example(runs):
    out = ok_json(runs, "json_both")
    assert out["limit"] == pytest.approx(0.5287, abs=5e-5)
    np.testing.assert_allclose(out["trajectory"],
                               theory.pos_recurrence(0.02, 4, kl="both", beta=0.5, beta_prev=5.0), rtol=1e-12)
    # Same fixed points as ref (C6), stability of the both step: (beta_prev + beta h')/(beta + beta_prev).
    ref = theory.fixed_points(0.02, 0.5)
    np.testing.assert_allclose([fp["p"] for fp in out["fixed_points"]], [fp.p for fp in ref], rtol=1e-12)
    assert out["fixed_points"][0]["slope"] == pytest.approx((5 + 0.5 * ref[0].slope) / 5.5, rel=1e-9)


def test_json_finite_group_e1_example(capsys):
    out = in_process_json(capsys, "predict", "--p-ref", "0.2", "--beta", "0.5", "--group-size", "8")
    assert out["limit"] == pytest.approx(0.9767, abs=5e-5)


def test_console_script_is_installed(runs):
    if SCRIPT is None:
        pytest.skip("grpo-amp console script not installed next to this interpreter")
    assert ok_json(runs, "script")["limit"] == 1.0


def test_json_p05_goes_to_one(capsys):
    out = in_process_json(capsys, "predict", "--p-ref", "0.5", "--beta", "1")
    assert [fp["p"] for fp in out["fixed_points"]] == [1.0]
    assert out["limit"] == 1.0


def test_json_eps_and_mean_only(capsys):
    out = in_process_json(capsys, *BASE, "--eps", "0.01")
    assert out["limit"] == pytest.approx(float(theory.predicted_limit(0.2, 1.0, eps=0.01)), rel=1e-12)
    assert out["limit"] < 1
    out = in_process_json(capsys, *BASE, "--norm", "mean_only", "--iters", "3")
    np.testing.assert_allclose(out["trajectory"][1:], 1 / (1 + 4 * np.exp(-1.0)), rtol=1e-12)


def test_two_cycle_has_no_limit(capsys):
    # p_ref = 0.005, beta = 1.5: the lower interior root has h' = -1.15, the iteration settles into
    # a 2-cycle; JSON says null (JSON has no NaN), the table says so in words.
    assert np.isnan(theory.predicted_limit(0.005, 1.5))
    assert in_process_json(capsys, "predict", "--p-ref", "0.005", "--beta", "1.5")["limit"] is None
    status, out, _ = in_process(capsys, "predict", "--p-ref", "0.005", "--beta", "1.5")
    assert status == 0 and "predicted limit from p_ref: none" in out


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("extra,name", BAD_INPUT, ids=BAD_IDS)
def test_bad_input_is_one_line_exit_1(capsys, runs, extra, name):
    run_id = " ".join(extra)
    if run_id in BAD_IN_SUBPROCESS:
        proc = runs[f"bad {run_id}"]
        status, out, err = proc.returncode, proc.stdout, proc.stderr
    else:
        status, out, err = in_process(capsys, *BASE, *extra)
    assert status == 1
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"grpo-amp: error: {name} ")


def test_unknown_benchmark_is_one_line_exit_1(runs):
    proc = runs["bench_unknown"]
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["grpo-amp: error: benchmark must be one of theory, trl, audit, scaling; got 'nonesuch'"]


def test_malformed_command_line_is_argparse_usage_error(runs):
    proc = runs["malformed"]
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "--p-ref" in proc.stderr


# --------------------------------------------------------------------------- bench (in process: fast)
def test_bench_registry_and_parser():
    assert list(BENCHMARKS) == ["theory", "trl", "audit", "scaling"]
    args = build_parser().parse_args(["bench", "theory", "--repeat", "3"])
    assert (args.name, args.repeat) == ("theory", 3)
    assert benchmark("theory") is BENCHMARKS["theory"]
    # every entry's module exists, found without importing it (trl's pulls in transformers)
    import importlib.util

    for module in ("grpo_amp.bench.theory", "grpo_amp.trl_family.bench", "grpo_amp.bench.audit", "grpo_amp.bench.scaling"):
        assert importlib.util.find_spec(module) is not None, module
    proc = subprocess.run([sys.executable, "-c", "import sys, grpo_amp.cli as c; c.build_parser();"
                           " print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"  # the parser reads the registry without importing any benchmark


def test_bench_rejects_bad_repeat_and_name():
    with pytest.raises(ValueError, match="repeat"):
        run_benchmark("theory", 0)
    with pytest.raises(ValueError, match="repeat"):
        run_benchmark("trl", True)
    with pytest.raises(ValueError, match="benchmark must be one of theory, trl, audit, scaling; got 'nonesuch'"):
        run_benchmark("nonesuch")


def test_bench_theory_report(monkeypatch):
    """The theory benchmark's real report at small sizes: a header and one row per task, in order."""
    from grpo_amp.bench import theory as bench_theory

    for name in list(bench_theory.THEORY_GOALS):
        monkeypatch.setitem(bench_theory.THEORY_GOALS, name, (200, 10.0))
    lines = run_benchmark("theory", 2).splitlines()
    assert "median of 2" in lines[0] and len(lines) == 4
    assert [ln.split(",")[0] for ln in lines[1:]] == ["predicted_limit", "fixed_points_batch", "pos_recurrence"]
    assert all(ln.rstrip().endswith("yes") for ln in lines[1:])  # 200 points in well under 10 s


def test_format_timings_verdicts():
    table = format_timings([Timing("fast", 0.5, 1.0), Timing("slow", 3.0, 2.0)], repeat=5)
    lines = table.splitlines()
    assert "median of 5" in lines[0]
    assert lines[1].startswith("fast") and lines[1].rstrip().endswith("yes")
    assert lines[2].startswith("slow") and lines[2].rstrip().endswith("NO")
