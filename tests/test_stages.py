"""The stages as Snakemake runs them: real ``python -m grpo_amp.stages.<name>`` subprocesses.

Each subprocess pays ~1-3 s of imports, so the chains (reference -> train -> predict, one per
tabular policy, each in its own results root) run in parallel in a module fixture, and the bad-input
runs are started together in a second one. Everything is written under pytest's tmp_path.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from grpo_amp import theory
from grpo_amp.policies.tabular import WEIGHTS, TabularPolicy
from grpo_amp.grpo.pos import pos_exact
from grpo_amp.schema import C1_COLUMNS, POS_COLUMNS, PREDICT_COLUMNS, TRAIN_METRICS_COLUMNS
from grpo_amp.study.runs import override_list
from grpo_amp.tasks.tabular import TabularTask

pytestmark = pytest.mark.slow

ITERS = 2
N_TRAIN, N_HELDOUT = 16, 8  # scale=smoke keeps 8 held-out questions
SMALL = [f"grpo.iterations={ITERS}", f"task.n_train={N_TRAIN}", "grpo.c1_groups=4"]
RUN = "mean_std_ref"


def stage(name: str, root: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", f"grpo_amp.stages.{name}", f"results={root}", "scale=smoke",
           "tracking.enabled=false", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def chain(root: Path, policy: str, *extra: str, stages=("reference", "train", "predict")):
    out = {}
    for name in stages:
        out[name] = stage(name, root, f"policy={policy}", *SMALL, *extra)
        if out[name].returncode != 0:
            break
    return out


CHAINS = {  # results root -> (policy, extra overrides, stages)
    "tabular_exact": ("tabular_exact", (), ("reference", "train", "predict")),
    "tabular_sgd": ("tabular_sgd", (), ("reference", "train", "predict")),
    # no per-iteration checkpoints: only the last state is kept; PoS is measured in training either way
    "sgd_no_checkpoints": ("tabular_sgd", ("policy.save_checkpoints=false",), ("reference", "train")),
}
SEEDS = {"tabular_exact": 1, "tabular_sgd": 2}  # scale=smoke: study.seeds = 2 for a sampled policy


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    roots = {r: tmp_path_factory.mktemp(r) for r in CHAINS}
    with ThreadPoolExecutor(3) as pool:
        done = {r: pool.submit(chain, roots[r], CHAINS[r][0], *CHAINS[r][1], stages=CHAINS[r][2]) for r in roots}
        results = {r: f.result() for r, f in done.items()}
    for p, procs in results.items():
        for name, proc in procs.items():
            assert proc.returncode == 0, f"{p} {name} failed:\n{proc.stderr[-3000:]}"
    return roots


def _tmp_leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


# --------------------------------------------------------------------------- the contract
@pytest.mark.parametrize("policy", ["tabular_exact", "tabular_sgd"])
def test_reference_and_train_outputs(chains, policy):
    smoke = chains[policy] / "smoke"
    ref = smoke / "reference" / "tabular"
    assert {p.name for p in ref.iterdir()} == {"questions.csv", "task.json", WEIGHTS}
    task = TabularTask.load(ref)
    assert len(task.questions) == N_TRAIN + N_HELDOUT and task.n_outputs == 8  # smoke_tabular sizing
    train = smoke / "train" / policy / RUN
    n_seeds = SEEDS[policy]
    assert {p.name for p in train.iterdir()} == {"metrics.csv", "timing.csv", "c1.csv", "run.json",
                                                 *(f"seed_{s:02d}" for s in range(n_seeds))}
    for s in range(n_seeds):
        assert {p.name for p in (train / f"seed_{s:02d}").iterdir()} == {"iter_001", "iter_002"}
        for n in (1, 2):
            TabularPolicy.load(train / f"seed_{s:02d}" / f"iter_{n:03d}", task)
    metrics = pd.read_csv(train / "metrics.csv")
    assert list(metrics.columns) == TRAIN_METRICS_COLUMNS and list(metrics["iteration"]) == [1, 2]
    assert (metrics["seed"] == (-1 if policy == "tabular_sgd" else 0)).all()  # seeds pooled in one table
    c1 = pd.read_csv(train / "c1.csv")
    assert list(c1.columns) == C1_COLUMNS and len(c1) == N_TRAIN * ITERS * n_seeds and (c1["n_groups"] == 4).all()
    assert sorted(c1["seed"].unique()) == list(range(n_seeds))
    assert np.isfinite(c1["surrogate"]).all() and (c1["surrogate_se"] >= 0).all()
    conf = json.loads((train / "run.json").read_text())["config"]
    assert conf["policy.name"] == policy and conf["variant.beta"] == 1.0 and conf["grpo.iterations"] == ITERS
    if policy == "tabular_sgd":
        assert np.isfinite(metrics["loss"]).all() and metrics["mean_reward"].between(0, 1).all()
    else:
        assert metrics["loss"].isna().all()  # no optimiser: C2's closed form
    assert not _tmp_leftovers(chains[policy])


@pytest.mark.parametrize("policy", ["tabular_exact", "tabular_sgd"])
def test_pos_and_predict_outputs(chains, policy):
    smoke = chains[policy] / "smoke"
    pos = pd.read_csv(smoke / "pos" / policy / f"{RUN}.csv")
    n_seeds = SEEDS[policy]
    assert list(pos.columns) == POS_COLUMNS
    assert len(pos) == (N_TRAIN + N_HELDOUT) * (ITERS + 1) * n_seeds
    assert sorted(pos["iteration"].unique()) == list(range(ITERS + 1))
    assert pos["pos"].between(0, 1).all() and (pos["method"] == "exact").all()
    assert (pos["pos_lo"] == pos["pos"]).all() and (pos["pos_hi"] == pos["pos"]).all()
    assert (pos.groupby(["seed", "iteration"]).size() == N_TRAIN + N_HELDOUT).all()
    # iteration 0 is pi_ref's exact PoS, for every seed
    ref = smoke / "reference" / "tabular"
    task = TabularTask.load(ref)
    p_ref, _ = pos_exact(TabularPolicy.load(ref, task), torch.arange(N_TRAIN + N_HELDOUT))
    for _, rows in pos[pos["iteration"] == 0].groupby("seed"):
        np.testing.assert_allclose(rows.sort_values("question")["pos"], p_ref, atol=1e-12)
    # tabular questions share no parameters: held-out PoS never moves
    held = pos[(pos["split"] == "heldout") & (pos["seed"] == 0)].pivot(index="iteration", columns="question",
                                                                        values="pos")
    np.testing.assert_allclose(held.to_numpy() - held.to_numpy()[0], 0.0, atol=1e-12)
    if n_seeds > 1:  # seeds are independent repeats: their trajectories differ
        last = pos[(pos["iteration"] == ITERS) & (pos["split"] == "train")].pivot(index="question", columns="seed",
                                                                                  values="pos")
        assert (last[0] - last[1]).abs().max() > 1e-6

    pred = pd.read_csv(smoke / "predict" / policy / f"{RUN}.csv")
    assert list(pred.columns) == PREDICT_COLUMNS and len(pred) == len(pos)
    train = pred[(pred["split"] == "train") & (pred["seed"] == 0)].sort_values(["iteration", "question"])
    wide = train.pivot(index="iteration", columns="question", values="pred_trajectory").to_numpy()
    np.testing.assert_allclose(wide, theory.pos_recurrence(wide[0], ITERS), rtol=0, atol=1e-12)
    assert pred.loc[pred["split"] == "heldout", ["pred_trajectory", "pred_one_step", "pred_limit"]].isna().all().all()
    np.testing.assert_allclose(train["p_ref"], np.tile(p_ref[:N_TRAIN], ITERS + 1), atol=1e-12)
    gap = (train["pos"] - train["pred_trajectory"]).abs()
    if policy == "tabular_exact":
        assert gap.max() < 1e-9 and train["kl_in_correct"].abs().max() < 1e-9
    else:
        assert gap[train["iteration"] > 0].mean() > 1e-3  # sampled practice is not the closed form
    assert not _tmp_leftovers(chains[policy])


def test_pos_measured_in_training_equals_pos_from_checkpoints(chains):
    """The PoS train measured as it went equals an independent measurement of each saved checkpoint."""
    smoke = chains["tabular_sgd"] / "smoke"
    ref = smoke / "reference" / "tabular"
    task = TabularTask.load(ref)
    pos = pd.read_csv(smoke / "pos" / "tabular_sgd" / f"{RUN}.csv")
    for s in range(SEEDS["tabular_sgd"]):
        for n in range(1, ITERS + 1):
            state = TabularPolicy.load(smoke / "train" / "tabular_sgd" / RUN / f"seed_{s:02d}" / f"iter_{n:03d}", task)
            p, kl = pos_exact(state, torch.arange(N_TRAIN + N_HELDOUT),
                              TabularPolicy.load(ref, task).answer_log_probs(torch.arange(N_TRAIN + N_HELDOUT)))
            rows = pos[(pos["seed"] == s) & (pos["iteration"] == n)].sort_values("question")
            np.testing.assert_allclose(rows["pos"], p, rtol=0, atol=1e-12)
            np.testing.assert_allclose(rows["kl_in_correct"], kl, rtol=0, atol=1e-12)


def test_without_checkpoints_only_the_last_state_is_kept_and_numbers_are_the_same(chains):
    train = chains["sgd_no_checkpoints"] / "smoke" / "train" / "tabular_sgd" / RUN
    assert {p.name for p in (train / "seed_00").iterdir()} == {f"iter_{ITERS:03d}"}
    a = pd.read_csv(chains["sgd_no_checkpoints"] / "smoke" / "pos" / "tabular_sgd" / f"{RUN}.csv")
    b = pd.read_csv(chains["tabular_sgd"] / "smoke" / "pos" / "tabular_sgd" / f"{RUN}.csv")
    pd.testing.assert_frame_equal(a, b)


def test_train_writes_the_prediction_the_predict_stage_writes(chains):
    """The train stage predicts in its own process (the workflow has no predict job); the standalone predict stage,
    run on the same measured PoS in another chain, writes the same bytes (plumbing: one function, two entries)."""
    in_train = chains["sgd_no_checkpoints"] / "smoke"  # train only: its predict and curves files are train's
    standalone = chains["tabular_sgd"] / "smoke"       # train, then the predict stage over the same files
    for kind in ("predict", "curves"):
        a = (in_train / kind / "tabular_sgd" / f"{RUN}.csv").read_bytes()
        assert a == (standalone / kind / "tabular_sgd" / f"{RUN}.csv").read_bytes(), kind


# --------------------------------------------------------------------------- a policy's runs in one job
POLICY_RUNS = ["mean_std_ref", "mean_std_ref-beta0.5"]


def _policy_files(root: Path, policy: str, runs, n: int | None = None) -> list[str]:
    """train_policy's output lists for ``runs`` under ``root`` (the first ``n`` files of the pos list only)."""
    kinds = {"train_dirs": ("train", ""), "pos_files": ("pos", ".csv"), "predict_files": ("predict", ".csv"),
             "curves_files": ("curves", ".csv")}
    out = []
    for key, (kind, ext) in kinds.items():
        files = [f"{root}/smoke/{kind}/{policy}/{r}{ext}" for r in runs]
        out.append(override_list(f"outputs.{key}", files[:n] if key == "pos_files" and n is not None else files))
    return out


@pytest.fixture(scope="module")
def policy_job(chains, tmp_path_factory):
    """Two tabular_sgd runs in one train_policy process, and each run as a train job of its own (the train rule's
    overrides: study.runs.run_overrides), all from the tabular_sgd chain's pi_ref and with one results root (run.json
    records it)."""
    from grpo_amp.study.runs import run_overrides

    chain_root = chains["tabular_sgd"]
    ref = chain_root / "smoke" / "reference" / "tabular"
    batch, single = tmp_path_factory.mktemp("policy_batch"), tmp_path_factory.mktemp("policy_single")
    common = [f"results={chain_root}", "scale=smoke", "tracking.enabled=false", *SMALL]
    cmds = [[sys.executable, "-m", "grpo_amp.stages.train_policy", *common,
             override_list("inputs.run_names", [f"tabular_sgd/{r}" for r in POLICY_RUNS]),
             override_list("inputs.references", [ref] * len(POLICY_RUNS)), *_policy_files(batch, "tabular_sgd", POLICY_RUNS)]]
    for run in POLICY_RUNS:
        cmds.append([sys.executable, "-m", "grpo_amp.stages.train", *common, "policy=tabular_sgd", *run_overrides(run),
                     f"inputs.reference={ref}", *(f"outputs.{k}={single}/smoke/{d}/tabular_sgd/{run}{e}" for k, d, e in
                                                 (("train", "train", ""), ("pos", "pos", ".csv"),
                                                  ("predict", "predict", ".csv"), ("curves", "curves", ".csv")))])
    with ThreadPoolExecutor(3) as pool:
        procs = list(pool.map(lambda c: subprocess.run(c, capture_output=True, text=True, timeout=300), cmds))
    for proc in procs:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return batch / "smoke", single / "smoke"


def test_a_policy_job_writes_the_bytes_each_run_writes_as_a_job_of_its_own(policy_job):
    """One process for a policy's runs (rule train_<policy>) against a process per run (rule train): every file of
    every run is the same bytes, seed states included, but timing.csv (wall seconds). Tried: composing every run with
    the first run's overrides (a config leaking into the next run) fails it. Dropping train.run's
    torch.manual_seed does not: trainer.train seeds the global RNG and its generator at every seed's start, so no
    RNG state crosses runs (the default study's transformer and TRL runs, one process per policy, were byte-identical
    to a job each: README, Speed)."""
    batch, single = policy_job
    for run in POLICY_RUNS:
        files = [f"{kind}/tabular_sgd/{run}.csv" for kind in ("pos", "predict", "curves")]
        train = batch / "train" / "tabular_sgd" / run
        files += [str(p.relative_to(batch)) for p in train.rglob("*") if p.is_file() and p.name != "timing.csv"]
        assert len(files) > 6 and any(f.endswith(".safetensors") for f in files), files
        for f in files:
            assert (batch / f).read_bytes() == (single / f).read_bytes(), (run, f)
    a, b = (pd.read_csv(batch / "pos" / "tabular_sgd" / f"{r}.csv") for r in POLICY_RUNS)
    assert not a["pos"].equals(b["pos"])  # two runs, not one run twice (beta 1 and 0.5 amplify differently)


# --------------------------------------------------------------------------- bad input
def _prepare(root: Path, exact_root: Path, what: str) -> None:
    smoke = root / "smoke"
    if what == "corrupt_reference":
        shutil.copytree(exact_root / "smoke" / "reference", smoke / "reference")
    if what == "corrupt_reference":
        (smoke / "reference" / "tabular" / WEIGHTS).write_bytes(b"\x93NUMPY garbage, not safetensors" * 4)
    if what == "corrupt_pos":
        (smoke / "pos" / "tabular_exact").mkdir(parents=True)
        (smoke / "pos" / "tabular_exact" / f"{RUN}.csv").write_bytes(bytes(range(255, -1, -1)) * 8)
    if what == "pos_missing_column":
        (smoke / "pos" / "tabular_exact").mkdir(parents=True)
        (smoke / "pos" / "tabular_exact" / f"{RUN}.csv").write_text("question,split,iteration\n0,train,0\n")


# name -> (stage, extra overrides, what to prepare, words the one line must name, the output that must not exist)
TRAIN_OUT, POS_OUT, PREDICT_OUT = (f"smoke/train/tabular_exact/{RUN}", f"smoke/pos/tabular_exact/{RUN}.csv",
                                   f"smoke/predict/tabular_exact/{RUN}.csv")
BAD = {
    "unknown_variant": ("train", ["variant=nope"], None, ["variant/nope"], "smoke/train/tabular_exact/nope"),
    "beta_negative": ("train", ["variant.beta=-1"], None, ["variant.beta", "> 0"], TRAIN_OUT),
    "group_of_one": ("train", ["grpo.group_size=1"], None, ["grpo.group_size", ">= 2"], TRAIN_OUT),
    "unknown_estimator": ("train", ["grpo.kl_estimator=k9"], None, ["grpo.kl_estimator"], TRAIN_OUT),
    "transformer_on_tabular": ("reference", ["policy=transformer", "task=tabular"], None,
                               ["task must be modarith"], "smoke/reference/transformer"),
    "train_before_reference": ("train", [], None, ["missing reference directory", "smoke/reference/tabular"],
                               TRAIN_OUT),
    "corrupt_reference": ("train", [], "corrupt_reference", ["corrupt tabular policy file", f"tabular/{WEIGHTS}"],
                          TRAIN_OUT),
    "unknown_run_tag": ("train", ["run_name=mean_std_ref-zz3"], None, ["mean_std_ref-zz3"], TRAIN_OUT),
    "corrupt_pos_csv": ("predict", [], "corrupt_pos", ["corrupt CSV file", f"pos/tabular_exact/{RUN}.csv"],
                        PREDICT_OUT),
    "pos_csv_missing_columns": ("predict", [], "pos_missing_column", ["missing column(s)", "pos_lo"], PREDICT_OUT),
    # train_policy: its lists (files under the results root: ${results}), known policies, every pi_ref first
    "policy_job_lists_differ": ("train_policy", [override_list("inputs.run_names", [f"tabular_exact/{r}" for r in POLICY_RUNS]),
                                           override_list("inputs.references", ["${results}/smoke/reference/tabular"] * 2),
                                           *_policy_files("${results}", "tabular_exact", POLICY_RUNS, n=1)],
                           None, ["outputs.pos_files", "1 files for 2 inputs.run_names"], POS_OUT),
    "policy_job_unknown_policy": ("train_policy", [override_list("inputs.run_names", ["nope/mean_std_ref"]),
                                                   override_list("inputs.references", ["${results}/smoke/reference/tabular"]),
                                                   *_policy_files("${results}", "nope", ["mean_std_ref"])],
                                  None, ["inputs.run_names", "unknown policy 'nope'"], "smoke/pos/nope/mean_std_ref.csv"),
    "policy_job_before_reference": ("train_policy", [override_list("inputs.run_names", [f"tabular_exact/{r}" for r in POLICY_RUNS]),
                                               override_list("inputs.references", ["${results}/smoke/reference/tabular"] * 2),
                                               *_policy_files("${results}", "tabular_exact", POLICY_RUNS)],
                               None, ["missing reference directory", "smoke/reference/tabular"], POS_OUT),
}


@pytest.fixture(scope="module")
def bad_runs(chains, tmp_path_factory):
    jobs = {}
    for name, (stage_name, overrides, prepare, _words, _out) in BAD.items():
        root = tmp_path_factory.mktemp(f"bad_{name}")
        if prepare:
            _prepare(root, chains["tabular_exact"], prepare)
        policy = [] if any(o.startswith("policy=") for o in overrides) else ["policy=tabular_exact"]
        jobs[name] = (root, [*policy, *SMALL, *overrides])
    with ThreadPoolExecutor(3) as pool:
        futures = {n: pool.submit(stage, BAD[n][0], root, *ov) for n, (root, ov) in jobs.items()}
        return {n: (jobs[n][0], f.result()) for n, f in futures.items()}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_line_and_no_output(bad_runs, name):
    root, proc = bad_runs[name]
    stage_name, _ov, _prep, words, output = BAD[name]
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr  # splitlines also splits on a progress bar's \r
    assert lines[0].startswith("grpo-amp: error: ")
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not (root / output).exists()
    # the stage's own folder held nothing before (``_prepare`` fills only its inputs): it holds no file now
    stage_dir = root / "smoke" / stage_name
    assert not stage_dir.exists() or not [p for p in stage_dir.rglob("*") if p.is_file()], sorted(stage_dir.rglob("*"))
    assert not _tmp_leftovers(root), _tmp_leftovers(root)


def test_config_errors_write_nothing_but_hydra_logs(bad_runs):
    """A config that fails to compose or validate writes no stage output at all."""
    for name in ("unknown_variant", "beta_negative", "group_of_one", "unknown_estimator"):
        root, _ = bad_runs[name]
        written = [p.relative_to(root).parts[:2] for p in root.rglob("*") if p.is_file()]
        assert all(parts[1] == "hydra" for parts in written), (name, written)
