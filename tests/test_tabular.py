"""The tabular chain: task and pi_ref, files, the exact control against C3, SGD practice, PoS measurement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from grpo_amp import theory
from grpo_amp.config import Config, GRPOConfig, KLEstimator, KLTarget, Norm, PolicyConfig, PolicyName, TaskConfig, VariantConfig
from grpo_amp.grpo.updates import loop_of
from grpo_amp.io import InputError
from grpo_amp.policies import load_reference
from grpo_amp.policies.tabular import WEIGHTS, TabularPolicy, make_reference
from grpo_amp.analysis.stats import wilson_interval
from grpo_amp.grpo.pos import pos_exact, pos_mc
from grpo_amp.tasks.tabular import TabularTask


def _task(n_train=24, n_heldout=0, n_outputs=8, seed=0) -> TaskConfig:
    return TaskConfig(n_train=n_train, n_heldout=n_heldout, n_outputs=n_outputs, seed=seed)


def _run(task_cfg: TaskConfig, variant: VariantConfig, policy: str, seed: int = 0, **grpo):
    """Train from pi_ref; returns (p_ref, PoS per iteration (N, Q), kl_in_correct per iteration, history)."""
    task, ref = make_reference(task_cfg)
    ref.requires_grad_(False)
    pi = ref.frozen_copy().requires_grad_(True)
    cfg = Config(variant=variant, task=task_cfg, seed=seed, policy=PolicyConfig(name=PolicyName(policy)),
                 grpo=GRPOConfig(**{"c1_groups": 1, **grpo}))
    qs = task.split_ids("train")
    ref_logp = ref.answer_log_probs(qs)
    pos, kl = [], []

    def save(n, policy):
        p, k = pos_exact(policy, qs, ref_logp)
        pos.append(p), kl.append(k)

    history = loop_of(cfg.policy.name.value)(pi, ref, task, cfg, save_iteration=save)
    return pos_exact(ref, qs)[0], np.array(pos), np.array(kl), history, pi


# --------------------------------------------------------------------------- task and pi_ref
def test_make_reference_spreads_p_ref():
    cfg = _task(n_train=160, n_heldout=40, n_outputs=16, seed=11)
    task, ref = make_reference(cfg)
    p_ref, _ = pos_exact(ref, torch.arange(200))
    assert p_ref.shape == (200,)
    # every p_ref inside [0.02, 0.95]: the construction puts the correct mass exactly on its target
    assert p_ref.min() >= 0.02 - 1e-12 and p_ref.max() <= 0.95 + 1e-12
    # ... and spread across it (targets ~ U(0.02, 0.95): quantiles 0.02 + 0.93 q, SE of a quantile ~0.035)
    assert p_ref.min() < 0.06 and p_ref.max() > 0.91
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert abs(np.quantile(p_ref, q) - (0.02 + 0.93 * q)) < 0.1, q
    # every question has a correct and a wrong output, and the split is as configured
    correct = task.correct.numpy()
    assert correct.shape == (200, 16) and correct.any(1).all() and (~correct).any(1).all()
    assert (task.questions["split"] == "train").sum() == 160 and (task.questions["split"] == "heldout").sum() == 40
    # pi_ref is not uniform inside the correct set: C2's within-correct check has something to detect
    probs = ref.probs()
    many = correct.sum(1) >= 3
    spread = [np.ptp(probs[i][correct[i]] / probs[i][correct[i]].sum()) for i in np.nonzero(many)[0]]
    assert np.median(spread) > 0.1
    # the same config builds the same reference; another seed another one
    _, again = make_reference(cfg)
    assert torch.equal(again.logits, ref.logits)
    _, other = make_reference(_task(n_train=160, n_heldout=40, n_outputs=16, seed=12))
    assert not torch.equal(other.logits, ref.logits)


def test_make_reference_respects_the_configured_range():
    task, ref = make_reference(TaskConfig(n_train=50, n_heldout=0, n_outputs=6, p_ref_low=0.3, p_ref_high=0.4))
    p_ref, _ = pos_exact(ref, task.split_ids("train"))
    assert p_ref.min() >= 0.3 - 1e-12 and p_ref.max() <= 0.4 + 1e-12


def test_task_save_load_round_trip(tmp_path):
    task, _ = make_reference(_task(n_train=10, n_heldout=5, n_outputs=7))
    task.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"questions.csv", "task.json"}
    back = TabularTask.load(tmp_path)
    assert back.n_outputs == 7 and torch.equal(back.correct, task.correct)
    assert back.questions[["question", "split", "prompt", "answers"]].astype(str).equals(
        task.questions[["question", "split", "prompt", "answers"]].astype(str))
    assert torch.equal(back.split_ids("heldout"), torch.arange(10, 15))


def test_task_load_errors(tmp_path):
    with pytest.raises(InputError, match="missing reference directory"):
        load_reference("tabular", tmp_path / "nowhere")
    task, _ = make_reference(_task())
    task.save(tmp_path)
    (tmp_path / "task.json").write_text("{not json")
    with pytest.raises(InputError, match=f"corrupt JSON file {tmp_path / 'task.json'}"):
        TabularTask.load(tmp_path)
    (tmp_path / "task.json").write_text('{"name": "modarith"}')
    with pytest.raises(InputError, match="does not describe a tabular task"):
        TabularTask.load(tmp_path)


def test_policy_save_load_round_trip(tmp_path):
    task, ref = make_reference(_task())
    ref.save(tmp_path / "ref")
    assert [p.name for p in (tmp_path / "ref").iterdir()] == [WEIGHTS]  # safetensors only, no temporary left
    back = TabularPolicy.load(tmp_path / "ref", task)
    assert back.logits.dtype == torch.float64 and torch.equal(back.logits, ref.logits)  # bit for bit
    task.save(tmp_path / "ref")
    task_back, ref_back = load_reference("tabular", tmp_path / "ref")  # the family loader: (task, pi_ref)
    assert torch.equal(task_back.correct, task.correct) and torch.equal(ref_back.logits, ref.logits)


def test_policy_load_errors_name_the_path(tmp_path):
    task, ref = make_reference(_task())
    path = tmp_path / WEIGHTS
    with pytest.raises(InputError, match=f"missing tabular policy file: {path}"):
        TabularPolicy.load(tmp_path, task)
    path.write_bytes(b"\x00\xff garbage that is not a safetensors header" * 3)
    with pytest.raises(InputError, match=f"corrupt tabular policy file {path}"):
        TabularPolicy.load(tmp_path, task)
    path.write_bytes(b"")
    with pytest.raises(InputError, match=f"corrupt tabular policy file {path}"):
        TabularPolicy.load(tmp_path, task)
    save_file({"weights": torch.zeros(3)}, str(path))  # a valid file without the logits
    with pytest.raises(InputError, match=f"corrupt tabular policy file {path}"):
        TabularPolicy.load(tmp_path, task)
    save_file({"logits": torch.zeros(3, 3, dtype=torch.float64)}, str(path))  # the wrong table
    with pytest.raises(InputError, match="shape"):
        TabularPolicy.load(tmp_path, task)


# --------------------------------------------------------------------------- the exact control
VARIANTS = {
    "ref": VariantConfig(name="mean_std_ref"),
    "mirror": VariantConfig(name="mean_std_mirror", kl=KLTarget.mirror, beta=2.0),
    "both": VariantConfig(name="mean_std_both", kl=KLTarget.both, beta=0.5, beta_prev=1.5),
    "mean_only": VariantConfig(name="mean_only_ref", norm=Norm.mean_only, beta=0.7),
    "eps": VariantConfig(name="mean_std_ref_eps", eps=0.01),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_tabular_exact_matches_the_pos_recurrence(name):
    v = VARIANTS[name]
    p_ref, pos, kl, history, _ = _run(_task(n_train=40), v, "tabular_exact", iterations=6)
    pred = theory.pos_recurrence(p_ref, 6, kl=v.kl.value, beta=v.beta, beta_prev=v.beta_prev, norm=v.norm.value,
                                 eps=v.eps)
    assert pos.shape == (6, 40)
    np.testing.assert_allclose(pos, pred[1:], rtol=0, atol=1e-9)
    assert np.abs(kl).max() < 1e-9  # C2: pi_n is pi_ref tilted by r only, inside the correct set
    assert (pos[-1] > p_ref).all()  # amplified
    # one step by hand, from docs/theory.md's C3 (independent of theory.py)
    x_ref = np.log(p_ref / (1 - p_ref))
    s = 1 / np.sqrt(p_ref * (1 - p_ref) + v.eps) if v.norm is Norm.mean_std else np.ones_like(p_ref)
    x1 = {"ref": x_ref + s / v.beta, "mirror": x_ref + s / v.beta,
          "both": (v.beta * x_ref + v.beta_prev * x_ref + s) / (v.beta + v.beta_prev)}[v.kl.value]
    np.testing.assert_allclose(pos[0], 1 / (1 + np.exp(-x1)), rtol=0, atol=1e-12)
    metrics = history.metrics_frame()
    assert list(metrics["iteration"]) == [1, 2, 3, 4, 5, 6] and metrics["loss"].isna().all()


def test_tabular_exact_mean_only_gains_everything_in_one_step():
    v = VARIANTS["mean_only"]
    p_ref, pos, _, _, _ = _run(_task(n_train=30), v, "tabular_exact", iterations=4)
    want = 1 / (1 + (1 - p_ref) / p_ref * math.exp(-1 / v.beta))  # C5's closed form, every n >= 1
    np.testing.assert_allclose(pos, np.broadcast_to(want, pos.shape), rtol=0, atol=1e-12)


def test_tabular_exact_c1_surrogate_is_the_closed_form():
    """C1 measured by the trainer: the sampled surrogate scatters around w+_G p_n - w-_G (1 - p_n)."""
    task_cfg = _task(n_train=40)
    p_ref, pos, _, history, _ = _run(task_cfg, VARIANTS["eps"], "tabular_exact", iterations=2, c1_groups=32)
    c1 = history.c1_frame()
    assert list(c1.columns) == ["question", "surrogate", "surrogate_se", "n_groups", "iteration"]
    first = c1[c1["iteration"] == 1].sort_values("question")
    wp, wm = theory.finite_group_weights(p_ref, 8, eps=0.01)
    closed = wp * pos[0] - wm * (1 - pos[0])
    z = (first["surrogate"].to_numpy() - closed) / first["surrogate_se"].to_numpy()
    assert np.sqrt(np.mean(z ** 2)) < 1.6 and np.abs(np.mean(z)) < 0.6


# --------------------------------------------------------------------------- practice: tabular_sgd
def _sgd_gap(G, M, seed, variant):
    p_ref, pos, _, _, _ = _run(_task(n_train=64, seed=seed), variant, "tabular_sgd", seed=seed,
                               iterations=2, group_size=G, inner_steps=M, lr=0.1)
    pred = theory.pos_recurrence(p_ref, 2, kl=variant.kl.value, beta=variant.beta, norm=variant.norm.value,
                                 eps=variant.eps)
    return float(np.abs(pos - pred[1:]).mean())


@pytest.mark.parametrize("name", ["ref", "mean_only"])
def test_tabular_sgd_approaches_c3_as_group_and_inner_steps_grow(name):
    """E2: mean |p_n - C3| falls from G=4 to G=64 (M=32) and from M=1 to M=32 (G=64); two seeds averaged.

    Measured (2 iterations, 64 questions, 8 outputs, seeds 0-2): mean_std_ref G 0.23 -> 0.10, M 0.31 -> 0.10;
    mean_only_ref G 0.11 -> 0.03, M 0.12 -> 0.03. The bounds below leave a wide margin.
    """
    v = VARIANTS[name]
    gap = {(G, M): np.mean([_sgd_gap(G, M, s, v) for s in (0, 1)]) for G, M in ((4, 32), (64, 32), (64, 1))}
    assert gap[(64, 32)] < 0.7 * gap[(4, 32)], gap
    assert gap[(64, 32)] < 0.7 * gap[(64, 1)], gap
    assert gap[(64, 32)] < 0.15, gap


def test_tabular_sgd_is_deterministic():
    v = VARIANTS["both"]
    a = _run(_task(n_train=20), v, "tabular_sgd", seed=5, iterations=2, group_size=8, inner_steps=3,
             kl_estimator=KLEstimator.k3, clip_eps=0.2)
    b = _run(_task(n_train=20), v, "tabular_sgd", seed=5, iterations=2, group_size=8, inner_steps=3,
             kl_estimator=KLEstimator.k3, clip_eps=0.2)
    np.testing.assert_array_equal(a[1], b[1])
    assert torch.equal(a[4].logits, b[4].logits)
    ma, mb = a[3].metrics_frame(), b[3].metrics_frame()  # wall time is in timing_frame, not here
    assert "seconds" not in ma.columns and list(a[3].timing_frame().columns) == ["iteration", "seconds"]
    assert ma.equals(mb) and a[3].c1_frame().equals(b[3].c1_frame())
    c = _run(_task(n_train=20), v, "tabular_sgd", seed=6, iterations=2, group_size=8, inner_steps=3,
             kl_estimator=KLEstimator.k3, clip_eps=0.2)
    assert not np.array_equal(a[1], c[1])  # the seed matters


# --------------------------------------------------------------------------- PoS measurement
def test_wilson_interval_by_hand():
    z = 1.959963984540054
    for k, n in ((8, 10), (0, 10), (10, 10), (37, 200)):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        lo, hi = wilson_interval(k, n)
        assert float(lo) == pytest.approx(max(centre - half, 0.0), abs=1e-12)
        assert float(hi) == pytest.approx(min(centre + half, 1.0), abs=1e-12)
    lo, hi = wilson_interval(np.array([8, 0]), np.array([10, 10]))
    np.testing.assert_allclose(lo, [0.4901625, 0.0], atol=1e-6)  # the textbook values for 8/10 and 0/10
    np.testing.assert_allclose(hi, [0.9433178, 0.2775328], atol=1e-6)
    lo99, hi99 = wilson_interval(8, 10, confidence=0.99)
    assert lo99 < lo[0] and hi99 > hi[0]


def test_pos_mc_interval_covers_the_exact_pos():
    task, ref = make_reference(_task(n_train=80, n_outputs=10, seed=4))
    qs = task.split_ids("train")
    exact, _ = pos_exact(ref, qs)
    mc, lo, hi = pos_mc(ref, task, qs, n_samples=1000, generator=torch.Generator().manual_seed(0), chunk=300)
    assert mc.shape == lo.shape == hi.shape == (80,)
    assert (lo <= mc).all() and (mc <= hi).all()
    covered = (lo <= exact) & (exact <= hi)
    assert covered.mean() >= 0.88  # 95% intervals: ~4 misses in 80 expected
    sd = np.sqrt(exact * (1 - exact) / 1000)
    assert (np.abs(mc - exact) <= 4.5 * sd).all()
    assert abs(np.mean((mc - exact) / sd)) < 0.5  # no bias


def test_pos_exact_sums_the_correct_answers():
    task, ref = make_reference(_task(n_train=12))
    qs = torch.arange(12)
    pos, kl = pos_exact(ref, qs)
    want = (ref.probs() * task.correct.numpy()).sum(1)
    np.testing.assert_allclose(pos, want, rtol=1e-12)
    assert np.all(kl == 0)
    _, kl_self = pos_exact(ref, qs, ref.answer_log_probs(qs))
    assert np.abs(kl_self).max() < 1e-12
