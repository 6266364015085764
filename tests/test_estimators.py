"""The estimator table (grpo_amp.estimators, docs/theory.md E6) read by the trainer and the prediction.

- the trainer's advantage (grpo.loss.group_advantages, torch) on all 2^G groups, averaged with the
  binomial law, against theory.finite_group_weights (numpy binomial sums): two implementations of
  each estimator that share only the table's row. For pass@k both are the same closed form (plumbing:
  the independent oracle is tests/test_theory_estimators.py's subset enumeration);
- R2 (L-BFGS on the exact finite-G objective, nothing of C3 in its path) against predict_frame's
  C3 with S_G for every estimator, to the optimiser's tolerance: the non-circular check;
- dynamic sampling's redraws against the capped geometric law; config errors naming the field.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from grpo_amp import estimators, theory
from grpo_amp.config import Config, ConfigError, EstimatorConfig, EstimatorName, GRPOConfig, TaskConfig, compose_config
from grpo_amp.grpo import rungs as R
from grpo_amp.grpo.loss import group_advantages
from grpo_amp.grpo.trainer import redraw_equal_groups
from grpo_amp.policies.tabular import make_reference
from grpo_amp.grpo.pos import pos_exact
from grpo_amp.analysis.predict import predict_frame

NAMES = list(estimators.ESTIMATOR_NAMES)


# --------------------------------------------------------------------------- trainer vs theory
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("G", [5, 6])
def test_trainer_advantage_averaged_over_groups_gives_theory_weights(name, G):
    est = estimators.resolve(name)
    patterns = torch.tensor(list(itertools.product((0.0, 1.0), repeat=G)), dtype=torch.float64)  # (2^G, G)
    adv, zero = group_advantages(patterns, **est.loss_kwargs())
    sigma_b = float(patterns.std()) if est.batch else None   # the batch is the table of all patterns
    n1 = patterns.sum(1)
    first = patterns[:, 0] == 1
    for p in (0.1, 0.45, 0.8):
        prob = p ** n1 * (1 - p) ** (G - n1)                             # P(pattern)
        z = 1 - p ** G - (1 - p) ** G if est.dynamic_sampling else 1.0  # kept groups only
        w_plus = float((prob * adv[:, 0])[first].sum()) / p / z          # E[A_1 | r_1 = 1] (given spread)
        w_minus = -float((prob * adv[:, 0])[~first].sum()) / (1 - p) / z
        want = theory.finite_group_weights(p, G, **est.theory_kwargs(sigma_b))
        np.testing.assert_allclose((w_plus, w_minus), want, rtol=1e-12, atol=1e-13, err_msg=name)
    assert zero.sum() == 2  # all-0 and all-1


def test_default_estimator_is_the_variant_and_bit_identical():
    cfg = compose_config(["variant=mean_std_ref_eps"])
    assert cfg.estimator.name == EstimatorName.grpo
    est = cfg.advantage
    assert (est.norm, est.std, est.eps) == (cfg.variant.norm.value, cfg.variant.std.value, cfg.variant.eps)
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0], [0, 0, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float64)
    a, za = group_advantages(rewards, **est.loss_kwargs())
    b, zb = group_advantages(rewards, cfg.variant.norm.value, cfg.variant.eps, cfg.variant.std.value)
    assert torch.equal(a, b) and torch.equal(za, zb)


def test_every_estimator_has_a_conf_file_and_composes():
    for name in NAMES:
        cfg = compose_config([f"estimator={name}", "grpo.group_size=8"])
        assert cfg.advantage == estimators.resolve(name, "mean_std", "population", 0.0)


@pytest.mark.parametrize("overrides, field", [
    (["estimator=pass_k", "grpo.group_size=4"], "estimator.name"),
    (["estimator.max_redraws=-1"], "estimator.max_redraws"),
    (["estimator=dapo_uncapped", "estimator.max_redraws=5"], "estimator.max_redraws")])
def test_bad_estimator_config_names_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        compose_config(overrides)


def test_dapo_uncapped_is_dapo_with_its_own_cap():
    """The sweep sets estimator.name alone: the row's cap (1000) replaces the default 16 there too, so run.json
    records the cap the trainer uses; the advantage and the prediction are dapo's."""
    for overrides in (["estimator=dapo_uncapped"], ["estimator.name=dapo_uncapped"]):
        cfg = compose_config(overrides)
        assert cfg.estimator.max_redraws == estimators.UNCAPPED_REDRAWS == 1000
        dapo = estimators.resolve("dapo")
        assert dataclasses.replace(cfg.advantage, name="dapo") == dapo
    assert compose_config(["estimator=dapo"]).estimator.max_redraws == 16


def test_unknown_estimator_names_the_field():
    with pytest.raises(ValueError, match="estimator.name"):
        estimators.spec("ppo")
    with pytest.raises(Exception, match="estimator"):
        compose_config(["estimator=ppo"])


# --------------------------------------------------------------------------- R2 meets each estimator's C3_G
def _setup(seed=2, n=10, k=6):
    tc = TaskConfig(n_train=n, n_heldout=0, n_outputs=k, seed=seed, p_ref_low=0.05, p_ref_high=0.9)
    task, ref = make_reference(tc)
    ref.requires_grad_(False)
    return tc, task, ref


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kl", ["ref", "mirror"])
def test_r2_meets_each_estimators_c3_g(name, kl):
    """Two R2 iterations from pi_ref; predict_frame's one-step C3 with the estimator's S_G from the
    measured p_{n-1} must equal R2's PoS to the optimiser's tolerance (1e-6)."""
    tc, task, ref = _setup()
    G = 6
    cfg = Config(task=tc, estimator=EstimatorConfig(name=EstimatorName(name)),
                 grpo=GRPOConfig(group_size=G, argmax_tol=1e-8))
    cfg.variant.kl = type(cfg.variant.kl)(kl)
    qs = task.split_ids("train")
    policy = ref.frozen_copy().requires_grad_(True)
    rows = []
    for n in range(3):
        if n:
            old = policy.frozen_copy()
            R.finite_group_argmax(policy, old, ref, task, qs, cfg, torch.Generator().manual_seed(0))
        rows.append(pd.DataFrame({"question": qs.numpy(), "seed": 0, "split": "train", "iteration": n,
                                  "pos": pos_exact(policy, qs)[0], "pos_lo": np.nan, "pos_hi": np.nan,
                                  "method": "exact", "kl_in_correct": 0.0, "n_correct": 1}))
    pred = predict_frame(pd.concat(rows, ignore_index=True), cfg.variant, G, estimator=cfg.advantage)
    later = pred[pred["iteration"] > 0]
    np.testing.assert_allclose(later["pos"], later["pred_one_step_G"], rtol=0, atol=1e-6)
    # the check tells estimators apart: grpo's S_G gives another number for every other estimator
    if name != "grpo":
        grpo = predict_frame(pd.concat(rows, ignore_index=True), cfg.variant, G,
                             estimator=estimators.resolve("grpo"))
        assert np.abs(grpo[grpo["iteration"] > 0]["pred_one_step_G"].to_numpy() - later["pos"].to_numpy()).max() > 1e-4


# --------------------------------------------------------------------------- dynamic sampling in the trainer
def test_redraws_follow_the_capped_geometric_law():
    """N questions at one p: redraws per question are min(Geometric(Z) - 1, cap), dropped w.p. (1-Z)^(cap+1)."""
    tc = TaskConfig(n_train=4000, n_heldout=0, n_outputs=20, seed=0, p_ref_low=0.049, p_ref_high=0.051)
    task, ref = make_reference(tc)
    qs = task.split_ids("train")
    p = pos_exact(ref, qs)[0]
    G, cap = 8, 3
    rollout = ref.sample(qs, G, torch.Generator().manual_seed(1))
    rewards = task.reward(rollout)
    new, new_rewards, info = redraw_equal_groups(ref, task, rollout, rewards, G, cap, torch.Generator().manual_seed(2))
    z = 1 - p ** G - (1 - p) ** G                                        # (Q,)
    expected = sum((1 - z) ** j for j in range(1, cap + 1))              # E[min(N, cap)], P(N >= j) = (1-Z)^j
    redraws = info["redraws"].numpy()
    se = redraws.std() / np.sqrt(len(redraws))
    assert abs(redraws.mean() - expected.mean()) < 4 * se
    dropped = info["dropped"].numpy()
    p_drop = ((1 - z) ** (cap + 1)).mean()
    assert abs(dropped.mean() - p_drop) < 4 * np.sqrt(p_drop * (1 - p_drop) / len(dropped))
    # kept questions have spread; the rewards are the new groups' own
    r = new_rewards.numpy()
    spread = ~(r == r[:, :1]).all(1)
    assert np.array_equal(spread, ~dropped)
    np.testing.assert_array_equal(task.reward(new).numpy(), r)


def test_dapo_training_records_redraws_and_drops_questions():
    from grpo_amp.grpo.trainer import grpo_update, train

    tc, task, ref = _setup(n=30)
    cfg = Config(task=tc, estimator=EstimatorConfig(name=EstimatorName.dapo, max_redraws=0),
                 grpo=GRPOConfig(group_size=4, iterations=2, c1_groups=2))
    policy = ref.frozen_copy().requires_grad_(True)
    history = train(policy, ref, task, cfg, update=grpo_update)
    frame = history.redraws_frame()
    assert list(frame.columns) == ["question", "redraws", "dropped", "iteration"] and len(frame) == 60
    assert frame["redraws"].eq(0).all() and frame["dropped"].sum() > 0   # cap 0: every equal group dropped
    cfg.estimator.max_redraws = 16
    history = train(ref.frozen_copy().requires_grad_(True), ref, task, cfg, update=grpo_update)
    assert history.redraws_frame()["redraws"].sum() > 0
    # without dynamic sampling nothing is recorded
    cfg.estimator.name = EstimatorName.verl
    assert train(ref.frozen_copy().requires_grad_(True), ref, task, cfg, update=grpo_update).redraws_frame() is None
