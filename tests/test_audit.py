"""The audit of a finished GRPO run: a real TRL output_dir (GRPOTrainer with save_steps on a smoke-sized
transformer), audited end to end and checked against a direct measurement of the same weights; the analysis
against closed forms; bad input as one line; reasoning-gym questions offline."""

from __future__ import annotations

import json
import shutil
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.user_model import char_tokenizer, one_line
import torch

from grpo_amp import theory
from grpo_amp.audit.analysis import analyse
from grpo_amp.audit.measure import AUDIT_POS_COLUMNS, audit_task, measure_point
from grpo_amp.audit.plan import audit_plan, audit_results, compose, expand
from grpo_amp.io import InputError, write_csv
from grpo_amp.schema import PREDICT_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
N_SAMPLES = 64
TRAIN_KW = dict(group_size=4, inner_steps=1, lr=3e-2, beta=0.1)


# --------------------------------------------------------------------------- a real TRL run
@pytest.fixture(scope="module")
def trl_run(tmp_path_factory) -> Path:
    """base/ (our smoke-sized reference directory: modarith, 1 layer, 32 dims) and out/ (TRL's output_dir:
    3 GRPOTrainer rounds of one optimiser step each, checkpoint-1..3 with TRL's pickles beside the safetensors)."""
    pytest.importorskip("trl")
    from grpo_amp.config import (Config, GRPOConfig, KLEstimator, ModelConfig, PolicyConfig, PolicyName, RatioLevel,
                                 ReferenceTrainingConfig, TaskConfig, VariantConfig)
    from grpo_amp.policies.reference_training import train_reference
    from grpo_amp.policies.transformer import TransformerPolicy
    from grpo_amp.tasks.modarith import ModArithTask
    from grpo_amp.trl_family.policy import train_trl

    root = tmp_path_factory.mktemp("trl_run")
    task_cfg = TaskConfig(name="modarith", modulus=7, n_train=20, n_heldout=4, seed=0)
    task = ModArithTask.generate(task_cfg)
    ref = train_reference(task, ModelConfig(n_layer=1, n_embd=32, n_head=2, intermediate_size=64),
                          ReferenceTrainingConfig(steps=100, batch_size=64, lr=3e-3), seed=0, device="cpu")
    ref.requires_grad_(False)
    task.save(root / "base")
    ref.save(root / "base")
    cfg = Config(variant=VariantConfig(beta=TRAIN_KW["beta"]),
                 grpo=GRPOConfig(iterations=3, group_size=TRAIN_KW["group_size"], inner_steps=TRAIN_KW["inner_steps"],
                                 lr=TRAIN_KW["lr"], ratio_level=RatioLevel.token, kl_estimator=KLEstimator.k3,
                                 c1_groups=1),
                 policy=PolicyConfig(name=PolicyName.transformer, device="cpu"), task=task_cfg, seed=0)
    policy = TransformerPolicy(task, ref.frozen_copy().model, device="cpu")
    policy.requires_grad_(True)
    train_trl(policy, ref, task, cfg, output_dir=root / "out", save_steps=1)
    return root


def audit_text(run: Path, *extra: str) -> str:
    return " ".join([f"base={run / 'base'}", f"checkpoints={run / 'out'}", "task=modarith",
                     f"variant.beta={TRAIN_KW['beta']}", f"grpo.group_size={TRAIN_KW['group_size']}",
                     f"grpo.inner_steps={TRAIN_KW['inner_steps']}", f"policy.mc_samples={N_SAMPLES}",
                     "policy.device=cpu", *extra])


def run_audit(run: Path, results: Path, tracking_uri: str | None = None) -> tuple[object, list]:
    """Both audit stages in process, as the Snakemake rules run them (one per point, then the audit)."""
    from grpo_amp.stages import audit as audit_stage

    plan = audit_plan(audit_text(run), "smoke")
    track = [f"tracking.uri={tracking_uri}"] if tracking_uri else ["tracking.enabled=false"]
    cfg = compose([*plan.overrides, f"results={results}", *track], "smoke")
    task = audit_task(cfg)
    for i, point in enumerate(plan.points):
        write_csv(measure_point(cfg, point, i, task), results / "points" / f"{point.name}.csv")
    audit_stage.run(cfg)
    return cfg, list(plan.points)


@pytest.mark.slow
def test_audit_of_a_real_trl_run_matches_a_direct_measurement_of_each_checkpoint(trl_run, tmp_path):
    """Each checkpoint's audited PoS (Monte Carlo, Wilson interval) against its exact PoS from the same
    safetensors weights (teacher forcing, pos_exact): the intervals cover the exact values at their 95% rate,
    and the audit of the last checkpoint is nearer its own exact PoS than the base's (training moved PoS, so
    an audit that loaded the wrong weights fails). The files, the trainer's log and MLflow are checked too."""
    from grpo_amp.policies.transformer import TransformerPolicy
    from grpo_amp.grpo.pos import pos_exact
    from grpo_amp.tasks.modarith import ModArithTask

    results = tmp_path / "audit"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg, points = run_audit(trl_run, results, tracking_uri=uri)
    assert [p.step for p in points] == [0, 1, 2, 3]
    assert [p.path.name for p in points[1:]] == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert (trl_run / "out" / "checkpoint-1" / "training_args.bin").is_file()  # TRL's pickle: there, never read

    pos = pd.read_csv(results / "pos.csv")
    task = ModArithTask.load(trl_run / "base")
    Q = len(task.questions)
    assert list(pos.columns) == AUDIT_POS_COLUMNS and len(pos) == 4 * Q
    questions = torch.arange(Q)
    exact = {p.step: pos_exact(TransformerPolicy.load(p.path, task, device="cpu"), questions)[0] for p in points}
    covered = []
    for p in points:
        rows = pos[pos["step"] == p.step].sort_values("question")
        covered += list((rows["pos_lo"].to_numpy() <= exact[p.step] + 1e-12) & (exact[p.step] <= rows["pos_hi"].to_numpy() + 1e-12))
    assert np.mean(covered) >= 0.85, np.mean(covered)
    last = pos[pos["step"] == 3].sort_values("question")["pos"].to_numpy()
    assert np.abs(exact[3] - exact[0]).mean() > 0.05  # the run moved PoS: the next line can tell checkpoints apart
    assert ((last - exact[3]) ** 2).sum() < ((last - exact[0]) ** 2).sum()

    predict = pd.read_csv(results / "predict.csv")
    assert set(PREDICT_COLUMNS) <= set(predict.columns) and {"pred_nominal", "pred_fit", "step"} <= set(predict.columns)
    train = predict[predict["split"] == "train"]
    # nominal C3: one theory iteration per grpo.inner_steps = 1 optimiser step, the run's beta, E1's S_G with G = 4
    p_ref = train[train["step"] == 0].sort_values("question")["pos"].to_numpy()
    want = theory.pos_recurrence(p_ref, 3, kl="ref", beta=TRAIN_KW["beta"], group_size=TRAIN_KW["group_size"])
    got = train.pivot(index="step", columns="question", values="pred_nominal").to_numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    ckpts = pd.read_csv(results / "checkpoints.csv")
    assert ckpts["step"].tolist() == [0, 1, 2, 3] and ckpts["trainer_reward"].iloc[1:].between(0, 1).all()
    overall = pd.read_csv(results / "audit.csv").iloc[0]
    assert overall["n_checkpoints"] == 3 and overall["n_questions"] == 20
    assert overall["verdict_fit"] in ("fits", "does not fit", "no movement")
    assert (results / "figures" / "audit.png").stat().st_size > 10_000
    assert "E4 fit" in (results / "audit.md").read_text()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(f"grpo-amp/{results.name}")
    (run,) = client.search_runs([exp.experiment_id])
    history = client.get_metric_history(run.info.run_id, "pos_mean")
    assert [m.step for m in history] == [0, 1, 2, 3]
    np.testing.assert_allclose([m.value for m in history], ckpts["pos_mean"], atol=1e-12)


# --------------------------------------------------------------------------- the analysis, on closed forms
def synthetic_pos(p_ref, steps, beta, m, kl="ref", group_size=8, n=10**7, **estimator):
    """A pos table whose PoS is C3 with m iterations per checkpoint interval, counts of n samples (noise ~ 1e-4)."""
    from grpo_amp.audit.analysis import iterations_at

    rows = iterations_at(np.asarray(steps), m)
    traj = theory.pos_recurrence(p_ref, int(rows[-1]), kl=kl, beta=beta, group_size=group_size,
                                 **estimator)[rows]  # (J+1, Q)
    out = []
    for j, s in enumerate(steps):
        k = np.rint(traj[j] * n)
        out.append(pd.DataFrame({"question": range(len(p_ref)), "seed": 0, "split": "train", "iteration": j,
                                 "pos": k / n, "pos_lo": k / n, "pos_hi": k / n, "method": "mc",
                                 "kl_in_correct": np.nan, "n_correct": np.nan, "step": s, "successes": k, "n_samples": n}))
    return pd.concat(out, ignore_index=True)


KW = dict(beta_prev=0.0, norm="mean_std", eps=0.0, std="population")


@pytest.mark.parametrize("kl", ["ref", "mirror"])
def test_e4_fit_recovers_beta_and_iterations_per_interval_of_a_c3_trajectory(kl):
    """PoS made by C3 with beta = 2.5 and 3 iterations per save interval of 50 steps: the fit finds both, the
    nominal view (one iteration per 50 steps, the wrong count) does not fit, and the verdicts say so."""
    p_ref = np.linspace(0.05, 0.6, 12)
    pos = synthetic_pos(p_ref, [0, 50, 100, 150, 200], beta=2.5, m=3, kl=kl)
    per_q, overall, _ = analyse(pos, steps_per_iteration=50, theory_kw=dict(kl=kl, beta=2.5, **KW), group_size=8,
                                max_m=8)
    assert overall["iterations_per_interval_fit"] == 3
    assert overall["beta_fit"] == pytest.approx(2.5, rel=1e-3)
    assert overall["rmse_fit"] < 1e-3 and overall["verdict_fit"] == "fits"
    assert overall["verdict_nominal"] == "does not fit"  # 1 iteration where there were 3
    # per question (m, beta) trade off (a question at its limit says nothing about m), but each one fits
    assert (per_q["rmse_fit"] < 0.02).all() and (per_q["verdict_fit"] == "fits").mean() >= 0.9


def test_the_audit_predicts_with_the_runs_estimator(fake_run):
    """A run made with Dr. GRPO's advantage (mean_only: r - mean, no std): audited with ``estimator=dr_grpo``
    the fit finds its beta 2.5; with GRPO's (the default) it does not (the audit once ignored ``estimator=``).
    ``theory_kwargs`` is what the stage hands ``analyse``, from the config a user's ``--config audit=...`` composes."""
    from grpo_amp.stages.audit import theory_kwargs

    p_ref = np.linspace(0.05, 0.6, 12)
    # kl=ref and a constant S (mean_only): p_n = p_1 for n >= 1, so beta alone sets the data (m cannot)
    pos = synthetic_pos(p_ref, [0, 50, 100, 150], beta=2.5, m=2, norm="mean_only")
    fits = {}
    for name in ("dr_grpo", "grpo"):
        cfg = compose(audit_plan(fake_text(fake_run, "variant.beta=2.5", "grpo.group_size=8",
                                           f"estimator={name}"), "smoke").overrides,
                      "smoke")
        kw = theory_kwargs(cfg, p_ref)
        _, overall, _ = analyse(pos, 50, kw, group_size=cfg.grpo.group_size, max_m=4)
        fits[name] = overall
    assert fits["dr_grpo"]["beta_fit"] == pytest.approx(2.5, rel=1e-3) and fits["dr_grpo"]["verdict_fit"] == "fits"
    assert abs(fits["grpo"]["beta_fit"] / 2.5 - 1) > 0.05 or fits["grpo"]["rmse_fit"] > 10 * fits["dr_grpo"]["rmse_fit"]


def test_shape_test_slope_is_iterations_over_beta_under_mirror():
    """kl=mirror, one iteration per interval: logit p_n - logit p_{n-1} = S_G(p_{n-1}) / beta exactly, so the
    pooled OLS slope is 1/beta, the intercept 0 and R^2 1 (up to the 1e-7 counting noise)."""
    p_ref = np.linspace(0.05, 0.5, 10)
    pos = synthetic_pos(p_ref, [0, 10, 20, 30], beta=4.0, m=1, kl="mirror", n=10**9)
    _, overall, _ = analyse(pos, 10, dict(kl="mirror", beta=4.0, **KW), group_size=8, max_m=2)
    assert overall["shape_slope"] == pytest.approx(1 / 4.0, rel=1e-3)
    assert abs(overall["shape_intercept"]) < 1e-3 and overall["shape_r2"] > 0.9999


def test_no_movement_when_checkpoints_are_the_base():
    """Checkpoints equal to the base within noise: the data cannot tell C3 from nothing ("no movement")."""
    rng = np.random.default_rng(0)
    p = rng.uniform(0.2, 0.8, 15)
    n = 64
    frames = [pd.DataFrame({"question": range(15), "seed": 0, "split": "train", "iteration": j, "pos": k / n,
                            "pos_lo": 0, "pos_hi": 1, "method": "mc", "kl_in_correct": np.nan, "n_correct": np.nan, "step": 10 * j,
                            "successes": k, "n_samples": n})
              for j, k in enumerate(rng.binomial(n, p, size=(4, 15)))]
    _, overall, _ = analyse(pd.concat(frames), 10, dict(kl="ref", beta=1.0, **KW), group_size=8, max_m=4)
    assert overall["verdict_fit"] == "no movement"


# --------------------------------------------------------------------------- bad input: one line each
@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """A base model directory and an output_dir of three checkpoints that copy it (checks read files only)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("fake_run")
    tok = char_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                                         bos_token_id=1, eos_token_id=2, pad_token_id=0))
    model.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    for step in (10, 20, 30):
        shutil.copytree(root / "base", root / "out" / f"checkpoint-{step}")
        (root / "out" / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step,
                                                                                         "log_history": []}))
    data = root / "q.jsonl"
    data.write_text("".join(json.dumps({"question": f"{a}+1=", "answer": str(a + 1)}) + "\n" for a in range(6)))
    return root


def fake_text(root: Path, *extra: str, checkpoints: str | None = None) -> str:
    return " ".join([f"base={root / 'base'}", f"checkpoints={checkpoints or root / 'out'}", "task=file",
                     f"task.path={root / 'q.jsonl'}", *extra])


def test_a_fake_run_plans_its_checkpoints_in_step_order(fake_run):
    plan = audit_plan(fake_text(fake_run), "smoke")
    assert [p.step for p in plan.points] == [0, 10, 20, 30] and plan.points[0].name == "base"
    assert "audit.base=" + str(fake_run / "base") in plan.overrides and str(fake_run / "q.jsonl") in plan.inputs
    assert audit_results("results", plan.overrides).startswith("results/audit-")


def _variant(root: Path, name: str, edit) -> Path:
    """A copy of checkpoint-10 under ``name``, changed by ``edit``."""
    out = root / name
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(root / "out" / "checkpoint-10", out / "checkpoint-10")
    edit(out / "checkpoint-10")
    return out


def _arch(ckpt: Path) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**cfg, "hidden_size": 32}))


def _tokenizer(ckpt: Path) -> None:
    char_tokenizer(string.printable[:95] + "\n").save_pretrained(ckpt)  # one more token


def _pickled(ckpt: Path) -> None:
    for f in ckpt.glob("*.safetensors"):
        f.unlink()
    (ckpt / "pytorch_model.bin").write_bytes(b"not unpickled, ever")


@pytest.mark.parametrize("case, match", [
    ("missing", "audit.checkpoints: no such directory"),
    ("empty", "has no checkpoint-<step> folders"),
    ("order", "(step 10) comes after"),
    ("architecture", "is another architecture than the base"),
    ("tokenizer", "has another tokenizer than the base"),
    ("pickled", "holds pickled weights only (pytorch_model.bin)"),
    ("answer_field", "task.answer_field='answer' is not a field of"),
    ("dataset", "task.dataset='no_such_dataset' is not a reasoning-gym 0.1.25 dataset"),
])
def test_bad_input_is_one_line_naming_it(fake_run, case, match):
    root = fake_run
    out, extra = None, []
    if case == "missing":
        out = str(root / "nowhere")
    elif case == "empty":
        (root / "empty").mkdir(exist_ok=True)
        out = str(root / "empty")
    elif case == "order":
        out = f"[{root / 'out' / 'checkpoint-20'},{root / 'out' / 'checkpoint-10'}]"
    elif case in ("architecture", "tokenizer", "pickled"):
        out = str(_variant(root, case, {"architecture": _arch, "tokenizer": _tokenizer, "pickled": _pickled}[case]))
    elif case == "answer_field":
        extra = ["task.answer_field=answer"]
        bad = root / "no_answer.jsonl"
        bad.write_text(json.dumps({"question": "1+1=", "solution": "2"}) + "\n")
        text = fake_text(root, f"task.path={bad}")
    elif case == "dataset":
        pytest.importorskip("reasoning_gym")
        text = " ".join([f"base={root / 'base'}", f"checkpoints={root / 'out'}", "task=reasoning_gym",
                         "task.dataset=no_such_dataset"])
    if case not in ("answer_field", "dataset"):
        text = fake_text(root, checkpoints=out)
    with pytest.raises(InputError) as exc:
        audit_plan(text, "smoke")
    assert match in one_line(exc)


@pytest.mark.slow
def test_the_stage_and_snakemake_refuse_bad_input_in_one_line_and_write_nothing(fake_run, tmp_path):
    """The same checks where the user meets them: the audit_point stage (exit 1, one line, no output file) and
    Snakemake's --config audit=... (exit non-zero before any job: no results directory)."""
    bad = _variant(fake_run, "pickled_stage", _pickled)
    out = tmp_path / "points" / "step-00000010.csv"
    cmd = [sys.executable, "-m", "grpo_amp.stages.audit_point", "policy=transformer", "scale=smoke",
           f"audit.base={fake_run / 'base'}", f"policy.checkpoint={fake_run / 'base'}", f"audit.checkpoints=[{bad}]",
           "task=file", f"task.path={fake_run / 'q.jsonl'}", f"inputs.train={bad / 'checkpoint-10'}",
           f"outputs.pos={out}", "tracking.enabled=false", f"results={tmp_path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "holds pickled weights only" in proc.stderr
    assert not out.exists() and not list(tmp_path.glob("points/.tmp-*"))

    from helpers.pipeline import run_snakemake

    rc, log = run_snakemake(tmp_path / "smk", "-n", "--cores", "2",
                            config=(f"audit={fake_text(fake_run, checkpoints=str(fake_run / 'nowhere'))}",))
    assert rc != 0 and "audit.checkpoints: no such directory" in log
    assert not (tmp_path / "smk" / "results").exists()
    rc, log = run_snakemake(tmp_path / "smk", "-n", "--cores", "2", config=(f"audit={fake_text(fake_run)}",))
    assert rc == 0, log[-2000:]
    for rule, count in (("audit_point", 4), ("audit", 1)):
        assert any(line.split() == [rule, str(count)] for line in log.splitlines()), log[-2000:]


# --------------------------------------------------------------------------- reasoning-gym offline
def test_reasoning_gym_questions_and_binary_reward(fake_run, tmp_path):
    """reasoning_gym.create_dataset offline: the questions, the reward 1 only for full credit (countdown gives
    0.01 to a wrong answer: 0 here), and the saved task reloads to the same questions."""
    pytest.importorskip("reasoning_gym")
    from grpo_amp.policies import load_lm_task
    from grpo_amp.tasks.reasoning_gym_task import ReasoningGymTask
    cfg = compose(expand([f"base={fake_run / 'base'}", "task=reasoning_gym", "task.dataset=countdown", "task.size=5",
                          "task.seed=3"]), "smoke")
    task = ReasoningGymTask.from_config(cfg.task, char_tokenizer(string.printable))  # countdown's prompts have newlines
    assert len(task.questions) == 5 and (task.questions["split"] == "train").all()
    for q in range(5):
        assert task.data.score_answer(answer="zzz", entry=task.entries[q]) == 0.01  # partial credit for a wrong one
        assert task.score("zzz", q) == 0.0 and task.score(task.entries[q]["answer"], q) == 1.0
    task.save(tmp_path / "ref")
    again = load_lm_task(tmp_path / "ref")
    assert isinstance(again, ReasoningGymTask) and again.questions.equals(task.questions)


def test_reasoning_gym_feeds_the_audit_and_the_lm_study(fake_run, tmp_path):
    """The audit measures a reasoning-gym task offline (a random tiny model: PoS 0, no movement), and the lm
    study's reference stage composes task=reasoning_gym with the user's model."""
    pytest.importorskip("reasoning_gym")
    from grpo_amp.stages import audit as audit_stage

    text = " ".join([f"base={fake_run / 'base'}", f"checkpoints={fake_run / 'out'}", "task=reasoning_gym",
                     "task.dataset=basic_arithmetic", "task.size=6", "task.max_new_tokens=3", "policy.mc_samples=8",
                     "policy.device=cpu"])
    plan = audit_plan(text, "smoke")
    cfg = compose([*plan.overrides, f"results={tmp_path}", "tracking.enabled=false"], "smoke")
    task = audit_task(cfg)
    for i, point in enumerate(plan.points):
        write_csv(measure_point(cfg, point, i, task), tmp_path / "points" / f"{point.name}.csv")
    audit_stage.run(cfg)
    pos = pd.read_csv(tmp_path / "pos.csv")
    assert len(pos) == 4 * 6 and pos["pos"].between(0, 1).all()
    assert pd.read_csv(tmp_path / "audit.csv").iloc[0]["verdict_fit"] == "no movement"
    lm = compose(["task=reasoning_gym", "task.dataset=basic_arithmetic", f"policy.checkpoint={fake_run / 'base'}"],
                 "smoke")
    assert lm.task.name == "reasoning_gym" and lm.policy.pos_method.value == "mc"


def test_paper_appendix_composes_with_the_audit(fake_run):
    """experiment=paper_appendix sets the paper's TRL setting; base= and task.path= replace its placeholders."""
    plan = audit_plan(fake_text(fake_run, "experiment=paper_appendix"), "smoke")
    cfg = compose(list(plan.overrides), "smoke")
    assert cfg.policy.checkpoint == str(fake_run / "base") and cfg.task.path == str(fake_run / "q.jsonl")
    assert cfg.grpo.group_size == 16 and cfg.variant.beta == 0.1 and cfg.policy.mc_samples == 50
    assert cfg.policy.temperature == 0.1 and cfg.grpo.inner_steps == 10
