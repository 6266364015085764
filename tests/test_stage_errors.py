"""``stage_main``'s two exits: user input is one line, anything else keeps its traceback.

Both run as real ``python -m`` subprocesses (as Snakemake starts a rule): the user error through
the train stage, the internal error through a throw-away stage module written to tmp_path whose
function fails inside numpy, as a bug would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from grpo_amp.config import ConfigError, compose_config
from grpo_amp.io import InputError

PLANTED = '''
import sys
import numpy as np
from grpo_amp.stages.common import stage_main

def run(cfg):
    sys.stdout.write(f"argv={sys.argv!r}\\n")
    np.zeros(2).reshape(3)  # numpy's own ValueError: not the user's doing

if __name__ == "__main__":
    stage_main(run)
'''


def _python_m(module: str, cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([str(cwd), src, env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", module, *overrides], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("stage_errors")
    (root / "planted_stage.py").write_text(PLANTED)
    common = [f"results={root}", "scale=smoke", "tracking.enabled=false"]
    with ThreadPoolExecutor(2) as pool:
        user = pool.submit(_python_m, "grpo_amp.stages.train", root, *common, "grpo.group_size=1")
        internal = pool.submit(_python_m, "planted_stage", root, *common)
        return {"root": root, "user": user.result(), "internal": internal.result()}


def test_a_config_range_error_is_one_line(runs):
    proc = runs["user"]
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == ["grpo-amp: error: grpo.group_size must be >= 2 (a group of 1 has no "
                                        "baseline); got 1"]


def test_an_internal_error_keeps_its_traceback(runs):
    proc = runs["internal"]
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "np.zeros(2).reshape(3)" in proc.stderr  # the failing line of the planted stage
    assert proc.stderr.rstrip().endswith("ValueError: cannot reshape array of size 2 into shape (3,)")
    assert "grpo-amp: error:" not in proc.stderr


def test_hydra_names_the_job_after_the_stage_without_touching_argv(runs):
    """The planted stage's job dir and log carry its module's name; its argv is what it was given."""
    proc, root = runs["internal"], runs["root"]
    assert (root / "smoke" / "hydra" / "planted_stage" / "tabular_exact" / "planted_stage.log").is_file()
    assert "hydra.job.name" not in proc.stdout and "argv=" in proc.stdout


@pytest.mark.parametrize("override", ["variant.beta=0", "grpo.iterations=0", "grpo.lr=-0.1", "task.n_outputs=1"])
def test_range_checks_raise_config_error(override):
    with pytest.raises(ConfigError, match=override.split("=")[0]) as info:
        compose_config([override])
    assert isinstance(info.value, InputError) and isinstance(info.value, ValueError)


def test_compare_reads_only_the_files_its_rule_names():
    """compare rebuilds no run list (issue 17): no lists, lists of other lengths and a name that is not
    policy/run are one-line InputErrors naming the input; matching lists become one RunFiles per run."""
    from pathlib import Path

    from grpo_amp.config import RuleFiles
    from grpo_amp.io import InputError
    from grpo_amp.stages.compare import RunFiles, rule_files

    with pytest.raises(InputError, match="inputs.run_names"):
        rule_files(RuleFiles())
    one = dict(run_names=["tabular_sgd/mean_std_ref"], predict_files=["p.csv"], train_dirs=["t"], pos_files=["q.csv"])
    with pytest.raises(InputError, match="inputs.pos_files: 0 files for 1"):
        rule_files(RuleFiles(**{**one, "pos_files": []}))
    with pytest.raises(InputError, match="not policy/run"):
        rule_files(RuleFiles(**{**one, "run_names": ["mean_std_ref"]}))
    with pytest.raises(InputError, match="inputs.draw_predict_files: 0 files for 1"):
        rule_files(RuleFiles(**one, draw_run_names=["tabular_sgd/mean_std_ref-draw1"]))
    runs, draws = rule_files(RuleFiles(**one, draw_run_names=["tabular_sgd/mean_std_ref-draw1"],
                                       draw_predict_files=["d.csv"]))
    assert runs == [RunFiles("tabular_sgd", "mean_std_ref", Path("p.csv"), Path("t"), Path("q.csv"))]
    assert draws == [RunFiles("tabular_sgd", "mean_std_ref-draw1", Path("d.csv"))]
