"""A user's model and data: task=file and policy.checkpoint through the config, the reference directory,
the stage CLI (one-line errors) and Snakemake's one override, ``--config lm="..."``; the paper's
appendix setting (experiment=paper_appendix) composes and dry-runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from grpo_amp import paths
from grpo_amp.config import ConfigError, PosMethod, compose_config
from grpo_amp.io import InputError
from grpo_amp.study.runs import lm_overrides, lm_results
from grpo_amp.tasks.file_task import FileTask, shipped_file
from helpers.user_model import char_tokenizer
from helpers.pipeline import run_snakemake

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [("2+3=", "#### 5", "train"), ("7-4=", "so 3. #### 3", "train"), ("6*2=", "#### 12", "train"),
             ("9-9=", "#### 0", "train"), ("1+1=", "#### 2", "test")]


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> dict:
    """A user's JSON lines file (own field names, a split) and a local HF model directory (safetensors)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("user")
    data = root / "q.jsonl"
    data.write_text("".join(json.dumps({"problem": q, "solution": a, "fold": s}) + "\n" for q, a, s in QUESTIONS))
    tok = char_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = root / "model"
    LlamaForCausalLM(config).save_pretrained(model)
    tok.save_pretrained(model)
    overrides = ["task=file", f"task.path={data}", "task.prompt_field=problem", "task.answer_field=solution",
                 "task.split_field=fold", "task.max_new_tokens=3", f"policy.checkpoint={model}"]
    return {"root": root, "data": data, "model": model, "overrides": overrides}


def one_line(exc) -> str:
    assert "\n" not in str(exc.value)
    return str(exc.value)


# ---- config --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["transformer", "trl"])
def test_task_file_composes_for_the_lm_policies_with_monte_carlo_pos(user, policy):
    cfg = compose_config([f"policy={policy}", "scale=smoke", *user["overrides"]])
    assert cfg.task.name == "file" and cfg.policy.family == "transformer"
    assert cfg.policy.pos_method == PosMethod.mc  # the registry's "exact" cannot list open-ended answers
    assert cfg.policy.mc_samples == 64 and cfg.grpo.iterations == 3  # conf/sizing/smoke_file.yaml


@pytest.mark.parametrize("overrides, match", [
    (["policy=tabular_sgd", "task=file", "policy.checkpoint=/m"], "task must be tabular for policy=tabular_sgd"),
    (["policy=transformer", "task=file"], "policy.checkpoint must be a local Hugging Face model directory"),
    (["policy=transformer", "task=file", "policy.checkpoint=/m", "task.verifier=regex"],
     "task.verifier must be one of exact, numeric, math_verify; got 'regex'"),
    (["policy=transformer", "task=file", "policy.checkpoint=/m", "task.answer_field="], "task.answer_field"),
])
def test_task_file_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match) as exc:
        compose_config(overrides)
    one_line(exc)


def test_paper_appendix_is_the_papers_setting():
    cfg = compose_config(["policy=trl", "scale=smoke", "experiment=paper_appendix"])
    assert (cfg.task.name, cfg.task.verifier, cfg.task.max_new_tokens) == ("file", "numeric", 200)
    assert (cfg.grpo.lr, cfg.grpo.clip_eps, cfg.grpo.inner_steps, cfg.grpo.group_size) == (5e-6, 0.2, 10, 16)
    assert (cfg.variant.beta, cfg.policy.temperature, cfg.policy.pos_method, cfg.policy.mc_samples) == \
        (0.1, 0.1, PosMethod.mc, 50)
    # a run's own setting (a beta-sweep point) still wins over the experiment's
    assert compose_config(["policy=trl", "experiment=paper_appendix", "variant.beta=0.5"]).variant.beta == 0.5


# ---- the lm override's parsing -------------------------------------------------------------------------
def test_lm_overrides_are_checked_and_name_their_own_results_root(user):
    lm = lm_overrides(" ".join(user["overrides"]), "smoke")
    assert lm.overrides == tuple(user["overrides"]) and lm.inputs == (str(user["model"]), str(user["data"]))
    assert lm_overrides("", "smoke").overrides == () and lm_results("results", ()) == "results"
    root = lm_results("results", lm.overrides)
    assert root.startswith("results/lm-") and root == lm_results("results/", list(lm.overrides))
    assert root != lm_results("results", lm.overrides[:-1])  # another model: another root
    for bad, match in [("policy=trl", "the workflow leaves to you"), ("scale.study.seeds=1", "leaves to you"),
                       ("task=file policy.checkpoint=/m task.verifier=regex", "task.verifier must be one of"),
                       ("task=nope", "task"), ("checkpoint", "KEY=VALUE")]:
        with pytest.raises(InputError, match=match) as exc:
            lm_overrides(bad, "smoke")
        assert one_line(exc).startswith("--config lm")


# ---- the reference directory: the user's model copied, the FileTask back ------------------------------
def test_reference_copies_the_checkpoint_and_loads_back_the_file_task(user, tmp_path):
    from safetensors.torch import load_file

    from grpo_amp.policies import load_reference
    from grpo_amp.policies.hf import HFPolicy
    from grpo_amp.stages import reference

    cfg = compose_config(["policy=transformer", "scale=smoke", *user["overrides"], f"results={tmp_path}",
                          "policy.device=cpu", "policy.temperature=0.5"])
    reference.run(cfg)
    out = paths.path(paths.REFERENCE, cfg)
    task, policy = load_reference("transformer", out, device="cpu", temperature=0.5)
    assert isinstance(task, FileTask) and task.verifier_name == "numeric" and task.max_new_tokens == 3
    assert list(task.questions["prompt"]) == [q for q, _, _ in QUESTIONS]
    assert list(task.questions["split"]) == ["train"] * 4 + ["heldout"]
    assert isinstance(policy, HFPolicy) and policy.temperature == 0.5
    mine, theirs = load_file(out / "model.safetensors"), load_file(user["model"] / "model.safetensors")
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)  # copied, not trained
    record = json.loads((out / "checkpoint.json").read_text())
    assert record["source"] == str(user["model"].resolve()) and set(record["sha256"]) >= {"model.safetensors",
                                                                                          "config.json"}


def test_a_tokenizer_that_cannot_encode_a_prompt_is_one_line():
    """Our smoke checkpoint's tokenizer has no '-': the shipped file's subtractions are named, not a traceback."""
    from grpo_amp.config import TaskConfig
    from grpo_amp.tasks.modarith import build_tokenizer

    with pytest.raises(InputError, match=r"cannot encode prompt \d+ \('\d+-\d+='\)") as exc:
        FileTask.from_config(TaskConfig(name="file"), build_tokenizer())
    assert str(shipped_file()) in one_line(exc)


# ---- per-iteration E_q |p_n - C3| ------------------------------------------------------------------------
def test_iterations_csv_numbers_average_to_the_runs_gap():
    """compare's per-iteration abs_err_trajectory, averaged over n >= 1, is runs.csv's gap (and the ladder's)."""
    from grpo_amp.config import VariantConfig
    from grpo_amp.analysis.predict import predict_frame
    from grpo_amp.stages.compare import iteration_metrics
    from grpo_amp.analysis.summaries import summarise_run

    rng = np.random.default_rng(0)
    rows = [dict(question=q, seed=s, split="train" if q < 5 else "heldout", iteration=n,
                 pos=float(rng.uniform(0.05, 0.95)), pos_lo=0.0, pos_hi=1.0, method="mc", kl_in_correct=np.nan,
                 n_correct=np.nan)
            for s in (0, 1) for n in range(4) for q in range(6)]
    pred = predict_frame(pd.DataFrame(rows), VariantConfig(), group_size=8)
    per_n = pd.DataFrame(iteration_metrics(pred))
    gap = summarise_run(pred, {"beta": 1.0, "kl": "ref", "norm": "mean_std", "eps": 0.0, "beta_prev": 0.0,
                               "std": "population", "group_size": 8})["gap_trajectory"]
    assert per_n.loc[per_n["iteration"] >= 1, "abs_err_trajectory"].mean() == pytest.approx(gap)


# ---- the stage CLI: one line and a non-zero exit ---------------------------------------------------------
def _reference_cli(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "grpo_amp.stages.reference", "policy=transformer", "scale=smoke",
                           f"results={cwd}", "tracking.enabled=false", "policy.device=cpu", *overrides],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_bad_model_path_missing_field_and_unknown_verifier_are_one_line_cli_errors(user, tmp_path):
    base = [o for o in user["overrides"] if not o.startswith(("policy.checkpoint=", "task.answer_field="))]
    cases = {
        "bad path": ([*base, "task.answer_field=solution", f"policy.checkpoint={tmp_path / 'no_model'}"],
                     f"policy.checkpoint: no such local directory {tmp_path / 'no_model'} (nothing is downloaded)"),
        "missing field": ([*base, f"policy.checkpoint={user['model']}", "task.answer_field=final"],
                          f"task.answer_field='final' is not a field of {user['data']}"),
        "unknown verifier": ([*base, "task.answer_field=solution", f"policy.checkpoint={user['model']}",
                              "task.verifier=regex"], "task.verifier must be one of exact, numeric, math_verify"),
    }
    with ThreadPoolExecutor(2) as pool:
        procs = {name: pool.submit(_reference_cli, tmp_path, *o) for name, (o, _) in cases.items()}
        procs = {name: p.result() for name, p in procs.items()}
    for name, (_, message) in cases.items():
        proc = procs[name]
        assert proc.returncode == 1, (name, proc.stderr)
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("grpo-amp: error:")]
        assert len(errors) == 1 and message in errors[0], (name, proc.stderr)
        assert "Traceback" not in proc.stderr, name
    assert not (tmp_path / "smoke" / "reference").exists()  # nothing half-written


# ---- Snakemake: the one override ---------------------------------------------------------------------------
def test_paper_appendix_dry_runs_with_local_paths(user, tmp_path):
    lm = f"experiment=paper_appendix policy.checkpoint={user['model']} task.path={shipped_file()}"
    rc, out = run_snakemake(tmp_path, "-n", "--cores", "2", config=(f"lm={lm}", "tracking=false"))
    assert rc == 0, out[-3000:]
    root = lm_results(str(tmp_path / "results"), tuple(lm.split()))
    assert f"{root}/smoke/reference/transformer" in out and f"{root}/smoke/train/trl/mean_std_ref" in out
    assert f"{tmp_path}/results/smoke/" not in out  # never the default study's paths
    # nor the results root's MLflow store (the harness passes it, as the default config does): the study's own
    rc, out = run_snakemake(tmp_path, "-n", "-p", "--cores", "2", config=(f"lm={lm}",))
    assert rc == 0 and f"tracking.uri='sqlite:///{root}/mlflow.db'" in out
    assert f"tracking.uri='sqlite:///{tmp_path}/results/mlflow.db'" not in out
    rc, out = run_snakemake(tmp_path, "-n", "-p", "--cores", "2", config=(f"lm={lm}", "tracking_uri=http://h:5000"))
    assert rc == 0 and "tracking.uri='http://h:5000'" in out
    # the experiment's placeholder model is not here: Snakemake says so before any job runs
    rc, out = run_snakemake(tmp_path, "-n", "--cores", "2", config=("lm=experiment=paper_appendix", "tracking=false"))
    assert rc != 0 and "/path/to/Qwen2.5-0.5B-Instruct" in out


def test_a_bad_lm_override_stops_snakemake_with_its_reason(tmp_path):
    rc, out = run_snakemake(tmp_path, "-n", "--cores", "2", config=("lm=task=file task.verifier=regex "
                                                                    "policy.checkpoint=/m", "tracking=false"))
    assert rc != 0 and "task.verifier must be one of exact, numeric, math_verify" in out


def test_user_file_and_checkpoint_through_the_chain_with_one_override(user, tmp_path):
    """reference (the user's model copied), train and predict of policy=transformer under the lm root (~15 s)."""
    lm = " ".join([*user["overrides"], "policy.mc_samples=8", "grpo.group_size=4", "policy.temperature=0.7"])
    root = Path(lm_results(str(tmp_path / "results"), tuple(lm.split()))) / "smoke"
    target = root / "predict" / "transformer" / "mean_std_ref.csv"
    rc, out = run_snakemake(tmp_path, "--cores", "2", str(target), config=(f"lm={lm}", "tracking=false"), timeout=900)
    assert rc == 0, out[-3000:] + "".join(p.read_text()[-2000:] for p in root.glob("logs/*/**/*.log"))
    assert not (tmp_path / "results" / "smoke").exists()  # the default study's root is untouched
    ref = root / "reference" / "transformer"
    assert json.loads((ref / "task.json").read_text())["task"] == "file"
    assert json.loads((ref / "checkpoint.json").read_text())["source"] == str(user["model"].resolve())
    assert "reference_training" not in (root / "logs" / "reference" / "transformer.log").read_text()
    pos = pd.read_csv(root / "pos" / "transformer" / "mean_std_ref.csv")
    assert set(pos["method"]) == {"mc"} and pos["kl_in_correct"].isna().all()
    assert sorted(pos["seed"].unique()) == [0, 1] and sorted(pos["iteration"].unique()) == [0, 1, 2, 3]
    assert ((pos["pos"] * 8) % 1 == 0).all()  # a count out of 8 samples
    pred = pd.read_csv(target)
    train = pred[pred["split"] == "train"]
    assert len(train) == 4 * 4 * 2 and train["pred_trajectory"].notna().all()
    assert pred.loc[pred["split"] == "heldout", "pred_trajectory"].isna().all()
    run = json.loads((root / "train" / "transformer" / "mean_std_ref" / "run.json").read_text())
    assert run["config"]["policy.temperature"] == 0.7 and "temperature 0.7 != 1" in run["notes"][0]
