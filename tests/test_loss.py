"""grpo/loss.py against hand numbers and plain-numpy re-computations; one real update on a table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grpo_amp.config import (
    Config, GRPOConfig, KLEstimator, KLTarget, LossAgg, Norm, PolicyConfig, PolicyName, RatioLevel, TaskConfig,
    VariantConfig,
)
from grpo_amp.grpo import loss as L
from grpo_amp.grpo.trainer import STOP_WINDOW, grpo_update, inner_stopping
from grpo_amp.policies.tabular import make_reference
from grpo_amp.grpo.pos import pos_exact
from grpo_amp.schema import ARGMAX_METRICS, IterationMetrics

SQRT3 = math.sqrt(3.0)


# --------------------------------------------------------------------------- advantages
REWARDS = torch.tensor([[1.0, 0.0, 0.0, 0.0],
                        [1.0, 1.0, 0.0, 0.0],
                        [1.0, 1.0, 1.0, 1.0],
                        [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)


def test_advantages_mean_std_population():
    adv, zero = L.group_advantages(REWARDS, "mean_std", 0.0, "population")
    # row 0: mean 1/4, var 3/16 -> (3/4)/(sqrt3/4) = sqrt3 and -(1/4)/(sqrt3/4) = -1/sqrt3
    np.testing.assert_allclose(adv[0], [SQRT3, -1 / SQRT3, -1 / SQRT3, -1 / SQRT3], rtol=1e-12)
    np.testing.assert_allclose(adv[1], [1, 1, -1, -1], rtol=1e-12)  # mean 1/2, var 1/4
    assert torch.equal(adv[2:], torch.zeros(2, 4)) and not torch.isnan(adv).any()
    assert zero.tolist() == [False, False, True, True]


def test_advantages_mean_std_sample_and_eps():
    adv, _ = L.group_advantages(REWARDS, "mean_std", 0.0, "sample")
    # sample variance = population * G/(G-1): row 0 3/16*4/3 = 1/4, row 1 1/4*4/3 = 1/3
    np.testing.assert_allclose(adv[0], [1.5, -0.5, -0.5, -0.5], rtol=1e-12)
    np.testing.assert_allclose(adv[1], [SQRT3 / 2, SQRT3 / 2, -SQRT3 / 2, -SQRT3 / 2], rtol=1e-12)
    adv, zero = L.group_advantages(REWARDS, "mean_std", 0.01, "population")
    np.testing.assert_allclose(adv[0], np.array([0.75, -0.25, -0.25, -0.25]) / math.sqrt(3 / 16 + 0.01), rtol=1e-12)
    np.testing.assert_allclose(adv[1], np.array([0.5, 0.5, -0.5, -0.5]) / math.sqrt(0.26), rtol=1e-12)
    assert torch.equal(adv[2:], torch.zeros(2, 4)) and zero.tolist() == [False, False, True, True]
    adv, _ = L.group_advantages(REWARDS, "mean_std", 0.01, "sample")
    np.testing.assert_allclose(adv[1], np.array([0.5, 0.5, -0.5, -0.5]) / math.sqrt(1 / 3 + 0.01), rtol=1e-12)


def test_advantages_mean_only():
    adv, zero = L.group_advantages(REWARDS, "mean_only", 0.3, "sample")  # eps and std play no part
    np.testing.assert_allclose(adv[0], [0.75, -0.25, -0.25, -0.25], rtol=1e-12)
    np.testing.assert_allclose(adv[1], [0.5, 0.5, -0.5, -0.5], rtol=1e-12)
    assert torch.equal(adv[2:], torch.zeros(2, 4)) and zero.tolist() == [False, False, True, True]


def test_advantages_sum_to_zero_and_carry_no_gradient():
    rewards = torch.bernoulli(torch.full((50, 8), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    rewards.requires_grad_(True)
    for norm in ("mean_std", "mean_only"):
        adv, _ = L.group_advantages(rewards, norm)
        assert not adv.requires_grad
        np.testing.assert_allclose(adv.sum(1).detach(), 0.0, atol=1e-12)


# --------------------------------------------------------------------------- log-probs and KL
def _tables():
    """A fixed (Q=1, G=2, T=2, V=3) example: pi, a target, tokens."""
    pi = np.array([[[[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]],
                    [[0.25, 0.25, 0.5], [0.7, 0.2, 0.1]]]])
    tgt = np.array([[[[0.2, 0.4, 0.4], [0.3, 0.3, 0.4]],
                     [[0.6, 0.2, 0.2], [0.5, 0.25, 0.25]]]])
    tokens = np.array([[[0, 2], [2, 1]]])
    return pi, tgt, tokens


def test_token_logp():
    pi, _, tokens = _tables()
    got = L.token_logp(torch.tensor(np.log(pi)), torch.tensor(tokens))
    want = np.log([[[0.5, 0.3], [0.5, 0.2]]])  # pi at the chosen tokens, read off the table
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-14)


@pytest.mark.parametrize("estimator", ["k1", "k3", "full_vocab"])
def test_kl_estimators_by_hand(estimator):
    pi, tgt, tokens = _tables()
    got = L.per_token_kl(torch.tensor(np.log(pi)), torch.tensor(np.log(tgt)), torch.tensor(tokens), estimator).numpy()
    want = np.zeros((1, 2, 2))
    for g in range(2):
        for t in range(2):
            p, q = pi[0, g, t, tokens[0, g, t]], tgt[0, g, t, tokens[0, g, t]]
            if estimator == "k1":
                want[0, g, t] = math.log(p) - math.log(q)
            elif estimator == "k3":
                want[0, g, t] = q / p - 1.0 - math.log(q / p)
            else:
                want[0, g, t] = sum(pi[0, g, t, v] * math.log(pi[0, g, t, v] / tgt[0, g, t, v]) for v in range(3))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # a hand value: k1 at (g=0, t=0) is log(0.5/0.2)
    if estimator == "k1":
        assert got[0, 0, 0] == pytest.approx(math.log(2.5), rel=1e-14)
    if estimator == "full_vocab":
        assert got[0, 0, 0] == pytest.approx(0.5 * math.log(2.5) + 0.3 * math.log(0.75) + 0.2 * math.log(0.5))


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_sampled_estimators_are_unbiased(estimator):
    """E_{v ~ pi}[k(v)] = KL(pi || target), summed exactly over v: k1 and k3 are unbiased."""
    pi, tgt, _ = _tables()
    logq, logt = torch.tensor(np.log(pi)), torch.tensor(np.log(tgt))
    every = torch.arange(3).view(1, 1, 1, 3).expand(1, 2, 2, 3)
    per_value = torch.stack([L.per_token_kl(logq, logt, every[..., v], estimator) for v in range(3)], -1)
    expected = (per_value * torch.tensor(pi)).sum(-1)
    exact = L.per_token_kl(logq, logt, every[..., 0], "full_vocab")
    np.testing.assert_allclose(expected.numpy(), exact.numpy(), rtol=1e-12)
    if estimator == "k3":
        assert (per_value >= 0).all()  # k3 is non-negative sample by sample


# --------------------------------------------------------------------------- clipping
RATIO = torch.tensor([0.5, 0.9, 1.0, 1.1, 1.5], dtype=torch.float64)


def test_clipped_surrogate():
    pos, neg = torch.full_like(RATIO, 2.0), torch.full_like(RATIO, -2.0)
    np.testing.assert_allclose(L.clipped_surrogate(RATIO, pos, None), [1.0, 1.8, 2.0, 2.2, 3.0])
    np.testing.assert_allclose(L.clipped_surrogate(RATIO, neg, None), [-1.0, -1.8, -2.0, -2.2, -3.0])
    # A > 0: the gain is capped at (1 + eps) A; a ratio below 1 - eps is not lifted
    np.testing.assert_allclose(L.clipped_surrogate(RATIO, pos, 0.2), [1.0, 1.8, 2.0, 2.2, 2.4])
    # A < 0: the loss is not reduced below (1 - eps) A; a ratio above 1 + eps is kept whole
    np.testing.assert_allclose(L.clipped_surrogate(RATIO, neg, 0.2), [-1.6, -1.8, -2.0, -2.2, -3.0])


# --------------------------------------------------------------------------- the loss, by hand
def _cfgs(kl="ref", beta=1.0, beta_prev=0.0, estimator="full_vocab", ratio_level="sequence", loss_agg="token_mean",
          clip_eps=None):
    v = VariantConfig(name="t", kl=KLTarget(kl), beta=beta, beta_prev=beta_prev)
    g = GRPOConfig(kl_estimator=KLEstimator(estimator), ratio_level=RatioLevel(ratio_level),
                   loss_agg=LossAgg(loss_agg), clip_eps=clip_eps)
    return v, g


def test_grpo_loss_scalar_example_by_hand():
    """Q=1, G=2, T=1, V=2: pi = (1/2, 1/2), pi_old = (1/4, 3/4), pi_ref = (4/5, 1/5), outputs 0 and 1, A = (1, -1)."""
    logq = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64)).expand(1, 2, 1, 2)
    old = torch.log(torch.tensor([0.25, 0.75], dtype=torch.float64)).expand(1, 2, 1, 2)
    ref = torch.log(torch.tensor([0.8, 0.2], dtype=torch.float64)).expand(1, 2, 1, 2)
    tokens = torch.tensor([[[0], [1]]])
    mask = torch.ones_like(tokens, dtype=torch.bool)
    adv = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    kl = math.log(1.25)  # KL((1/2,1/2) || (4/5,1/5)) = 1/2 log(5/8) + 1/2 log(5/2) = log(5/4)
    # ratios 2 and 2/3: objective (2 - 2/3)/2 = 2/3
    v, g = _cfgs(beta=0.5)
    t = L.grpo_loss(logq, old, ref, tokens, mask, adv, v, g)
    assert float(t.pg_objective) == pytest.approx(2 / 3, rel=1e-12)
    assert float(t.kl_ref) == pytest.approx(kl, rel=1e-12) and float(t.kl_prev) == 0.0
    assert float(t.loss) == pytest.approx(-2 / 3 + 0.5 * kl, rel=1e-12)
    assert float(t.clip_frac) == 0.0
    # clipped at 0.2: min(2, 1.2) * 1 = 1.2; min(-2/3, -0.8) = -0.8 -> (1.2 - 0.8)/2 = 0.2; both ratios outside
    v, g = _cfgs(beta=0.5, clip_eps=0.2)
    t = L.grpo_loss(logq, old, ref, tokens, mask, adv, v, g)
    assert float(t.pg_objective) == pytest.approx(0.2, rel=1e-12)
    assert float(t.loss) == pytest.approx(-0.2 + 0.5 * kl, rel=1e-12)
    assert float(t.clip_frac) == 1.0
    # mirror: the penalty is KL(pi || pi_old) = 1/2 log(2) + 1/2 log(2/3) = 1/2 log(4/3)
    v, g = _cfgs(kl="mirror", beta=2.0)
    t = L.grpo_loss(logq, old, ref, tokens, mask, adv, v, g)
    assert float(t.kl_prev) == pytest.approx(0.5 * math.log(4 / 3), rel=1e-12) and float(t.kl_ref) == 0.0
    assert float(t.loss) == pytest.approx(-2 / 3 + 2.0 * 0.5 * math.log(4 / 3), rel=1e-12)


def _batch(seed=0, Q=2, G=3, T=4, V=5):
    gen = np.random.default_rng(seed)

    def logsm(x):
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    raw = gen.normal(size=(Q, G, T, V))
    logq = logsm(raw)
    old = logsm(raw + 0.3 * gen.normal(size=raw.shape))  # pi_old near pi: ratios on both sides of the clip range
    ref = logsm(gen.normal(size=raw.shape))
    tokens = gen.integers(0, V, size=(Q, G, T))
    lengths = np.array([[4, 2, 3], [1, 4, 4]])  # padding after each sequence's length
    mask = np.arange(T)[None, None, :] < lengths[..., None]
    adv = gen.normal(size=(Q, G))
    return logq, old, ref, tokens, mask, adv


def _reference_loss(logq, old, ref, tokens, mask, adv, kl, beta, beta_prev, estimator, ratio_level, loss_agg, clip):
    """The same objective written with loops over plain numpy: an independent re-computation."""
    Q, G, T, V = logq.shape

    def kl_tok(a, b, q, g, t):
        x = tokens[q, g, t]
        lp, lt = a[q, g, t, x], b[q, g, t, x]
        if estimator == "k1":
            return lp - lt
        if estimator == "k3":
            return math.exp(lt - lp) - 1 - (lt - lp)
        return float(np.sum(np.exp(a[q, g, t]) * (a[q, g, t] - b[q, g, t])))

    def surr(r, a):
        return r * a if clip is None else min(r * a, min(max(r, 1 - clip), 1 + clip) * a)

    coef = {"ref": [(beta, ref)], "mirror": [(beta, old)], "both": [(beta, ref), (beta_prev, old)]}[kl]
    pen = np.zeros((Q, G, T))
    for q, g, t in np.ndindex(Q, G, T):
        pen[q, g, t] = sum(c * kl_tok(logq, target, q, g, t) for c, target in coef)
    lp = np.take_along_axis(logq, tokens[..., None], -1)[..., 0]
    lo = np.take_along_axis(old, tokens[..., None], -1)[..., 0]
    outside = []
    if ratio_level == "sequence":
        pg, kls = [], []
        for q, g in np.ndindex(Q, G):
            r = math.exp(sum(lp[q, g, t] - lo[q, g, t] for t in range(T) if mask[q, g, t]))
            pg.append(surr(r, adv[q, g]))
            kls.append(sum(pen[q, g, t] for t in range(T) if mask[q, g, t]))
            outside.append(clip is not None and abs(r - 1) > clip)
        obj = np.mean(pg)
        loss = -obj + np.mean(kls)
    else:
        per = np.zeros((Q, G, T))
        for q, g, t in np.ndindex(Q, G, T):
            r = math.exp(lp[q, g, t] - lo[q, g, t])
            per[q, g, t] = surr(r, adv[q, g])
            if mask[q, g, t]:
                outside.append(clip is not None and abs(r - 1) > clip)

        def agg(x):
            if loss_agg == "token_mean":
                return (x * mask).sum() / mask.sum()
            return np.mean([(x[q, g] * mask[q, g]).sum() / mask[q, g].sum() for q, g in np.ndindex(Q, G)])

        obj = agg(per)
        loss = -obj + agg(pen)
    return loss, obj, float(np.mean(outside))


CASES = [
    ("ref", 0.7, 0.0, "full_vocab", "sequence", "token_mean", None),
    ("ref", 0.7, 0.0, "k1", "sequence", "token_mean", 0.2),
    ("mirror", 1.3, 0.0, "k3", "sequence", "sequence_mean", None),
    ("both", 0.7, 0.3, "full_vocab", "sequence", "token_mean", 0.2),
    ("ref", 0.7, 0.0, "full_vocab", "token", "token_mean", None),
    ("ref", 0.7, 0.0, "k3", "token", "sequence_mean", 0.2),
    ("mirror", 2.0, 0.0, "k1", "token", "token_mean", 0.2),
    ("both", 0.7, 0.3, "k3", "token", "sequence_mean", None),
    ("both", 0.5, 2.0, "full_vocab", "token", "token_mean", 0.1),
]


@pytest.mark.parametrize("kl,beta,beta_prev,estimator,ratio_level,loss_agg,clip", CASES)
def test_grpo_loss_against_numpy(kl, beta, beta_prev, estimator, ratio_level, loss_agg, clip):
    logq, old, ref, tokens, mask, adv = _batch()
    v, g = _cfgs(kl, beta, beta_prev, estimator, ratio_level, loss_agg, clip)
    t = L.grpo_loss(*(torch.tensor(a) for a in (logq, old, ref, tokens, mask, adv)), v, g)
    loss, obj, frac = _reference_loss(logq, old, ref, tokens, mask, adv, kl, beta, beta_prev, estimator,
                                      ratio_level, loss_agg, clip)
    assert float(t.loss) == pytest.approx(loss, rel=1e-10, abs=1e-12)
    assert float(t.pg_objective) == pytest.approx(obj, rel=1e-10, abs=1e-12)
    assert float(t.clip_frac) == pytest.approx(frac, abs=1e-12)
    if clip is not None:
        assert 0.0 < frac < 1.0  # the example does exercise clipping


def test_padding_is_ignored():
    """Changing log-probs or tokens at padded positions changes nothing."""
    logq, old, ref, tokens, mask, adv = _batch()
    logq2, tokens2 = logq.copy(), tokens.copy()
    logq2[~mask] = np.log(np.full(logq.shape[-1], 1 / logq.shape[-1]))
    tokens2[~mask] = 0
    for level, agg in (("sequence", "token_mean"), ("token", "token_mean"), ("token", "sequence_mean")):
        v, g = _cfgs("both", 0.7, 0.3, "full_vocab", level, agg, 0.2)
        a = L.grpo_loss(*(torch.tensor(x) for x in (logq, old, ref, tokens, mask, adv)), v, g)
        b = L.grpo_loss(*(torch.tensor(x) for x in (logq2, old, ref, tokens2, mask, adv)), v, g)
        assert float(a.loss) == pytest.approx(float(b.loss), rel=1e-12)
        assert float(a.kl_ref) == pytest.approx(float(b.kl_ref), rel=1e-12)


def test_kl_terms_are_sequence_kls():
    """kl_ref / kl_prev: the per-token estimate summed over real tokens, averaged over sequences."""
    logq, old, ref, tokens, mask, adv = _batch()
    v, g = _cfgs("both", 0.7, 0.3, "k1", "token", "token_mean")
    t = L.grpo_loss(*(torch.tensor(x) for x in (logq, old, ref, tokens, mask, adv)), v, g)
    lp = np.take_along_axis(logq, tokens[..., None], -1)[..., 0]
    for target, got in ((ref, t.kl_ref), (old, t.kl_prev)):
        lt = np.take_along_axis(target, tokens[..., None], -1)[..., 0]
        assert float(got) == pytest.approx(((lp - lt) * mask).sum(-1).mean(), rel=1e-12)


def test_gradient_matches_finite_difference():
    """d loss / d logits of the sequence-level unclipped loss (exact KL to pi_ref and pi_old)."""
    _, old, ref, tokens, mask, adv = _batch(seed=3, Q=1, G=3, T=2, V=4)
    logits = torch.tensor(np.random.default_rng(4).normal(size=(1, 3, 2, 4)), requires_grad=True)
    v, g = _cfgs("both", 0.7, 0.3, "full_vocab", "sequence", "token_mean", None)
    args = [torch.tensor(x) for x in (old, ref, tokens, mask, adv)]

    def f(x):
        return L.grpo_loss(torch.log_softmax(x, -1), *args[:2], *args[2:], v, g).loss

    f(logits).backward()
    grad = logits.grad.numpy()
    num = np.zeros_like(grad)
    h = 1e-6
    base = logits.detach().clone()
    for idx in np.ndindex(*grad.shape):
        plus, minus = base.clone(), base.clone()
        plus[idx] += h
        minus[idx] -= h
        num[idx] = (float(f(plus)) - float(f(minus))) / (2 * h)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)
    assert np.abs(grad).max() > 1e-3


def test_unclipped_gradient_at_old_is_the_advantage_gradient():
    """At pi = pi_old the sequence-level ratio gradient is d/dlogits of mean(A * log pi(o)) (policy gradient)."""
    _, old, ref, tokens, mask, adv = _batch(seed=5, Q=1, G=3, T=1, V=4)
    mask = np.ones_like(mask)
    logits = torch.tensor(old.copy(), requires_grad=True)  # log_softmax(old) = old
    v, g = _cfgs("ref", 1.0, 0.0, "full_vocab", "sequence", "token_mean", None)
    terms = L.grpo_loss(torch.log_softmax(logits, -1), torch.tensor(old), torch.tensor(old), torch.tensor(tokens),
                        torch.tensor(mask), torch.tensor(adv), v, g)  # KL to pi_ref = pi_old: zero gradient at pi_old
    terms.loss.backward()
    p = np.exp(old)
    onehot = np.eye(4)[tokens]
    want = -(adv[..., None, None] * (onehot - p)) / adv.size  # -d/dlogits mean(A log pi)
    np.testing.assert_allclose(logits.grad.numpy(), want, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------- one update on a table
def test_grpo_update_on_a_tabular_policy():
    task_cfg = TaskConfig(n_train=32, n_heldout=0, n_outputs=8, seed=3)
    task, ref = make_reference(task_cfg)
    ref.requires_grad_(False)
    policy = ref.frozen_copy().requires_grad_(True)
    old = policy.frozen_copy()
    cfg = Config(variant=VariantConfig(norm=Norm.mean_std), task=task_cfg,
                 grpo=GRPOConfig(group_size=16, inner_steps=8, lr=0.1),
                 policy=PolicyConfig(name=PolicyName.tabular_sgd))
    questions = task.split_ids("train")
    before = policy.logits.detach().clone()
    metrics = grpo_update(policy, old, ref, task, questions, cfg, torch.Generator().manual_seed(0))
    after = policy.logits.detach()
    assert isinstance(metrics, IterationMetrics)
    assert all(math.isfinite(x) for k, x in metrics.values().items() if k not in ARGMAX_METRICS)
    assert all(math.isnan(metrics.values()[k]) for k in ARGMAX_METRICS)  # the transformer's exact rungs only
    assert metrics.redraws is None  # no dynamic sampling: no per-question redraw table
    assert metrics.inner_steps_taken == 8  # no grpo.inner_tol: exactly M steps
    assert (after - before).abs().max() > 0.1  # Adam with lr 0.1 for 8 steps moves the logits
    assert torch.equal(old.logits, before) and torch.equal(ref.logits, before)  # frozen copies untouched
    assert 0.0 <= metrics.mean_reward <= 1.0 and 0.0 <= metrics.zero_spread_frac <= 1.0
    assert metrics.kl_ref > 0 and metrics.kl_prev == 0.0
    # the update amplifies success on average (C4's direction)
    p0, _ = pos_exact(ref, questions)
    p1, _ = pos_exact(policy, questions)
    assert p1.mean() > p0.mean() + 0.02


# --------------------------------------------------------------------------- early stopping (inner_tol)
def _steps_until_stop(losses, min_steps, tol, max_steps, window=STOP_WINDOW):
    """How many optimiser steps grpo_update takes when the loss after k steps is losses[k]."""
    stop = inner_stopping(min_steps, tol, max_steps, window)
    for taken, loss in enumerate(losses):
        if stop(taken, loss):
            return taken
    raise AssertionError("never stopped")


def test_inner_stopping_stops_when_the_objective_stops_improving():
    falling = [1.0 - 0.1 * k for k in range(8)]            # 8 losses falling by 0.1 per step (0 .. 7 steps)
    flat = [falling[-1] - 1e-5 * k for k in range(1, 40)]  # then a plateau: 1e-5 per step
    losses = falling + flat
    # the mean fall over the last 4 steps drops below 1e-3 at the 4th plateau loss: after 11 steps
    assert _steps_until_stop(losses, min_steps=1, tol=1e-3, max_steps=100) == 11
    assert _steps_until_stop(losses, min_steps=20, tol=1e-3, max_steps=100) == 20  # at least M = min_steps
    assert _steps_until_stop(losses, min_steps=1, tol=1e-3, max_steps=6) == 6      # the cap
    assert _steps_until_stop(losses, min_steps=1, tol=1e-6, max_steps=30) == 30    # 1e-5 per step still improves
    stop = inner_stopping(4, None, 4)                                               # no inner_tol: never early
    assert not any(stop(k, 1.0) for k in range(100))


def test_inner_stopping_rides_over_one_step_up():
    """Adam is not monotone: one step up between steps down is not "stopped improving"."""
    losses = [1.0, 0.9, 0.8, 0.82, 0.6, 0.5, 0.4, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    assert _steps_until_stop(losses, min_steps=1, tol=1e-3, max_steps=100) == 11
    assert _steps_until_stop(losses, min_steps=1, tol=1e-3, max_steps=100, window=1) == 3  # a 1-step rule stops


def test_inner_tol_and_max_inner_steps_are_checked():
    with pytest.raises(ValueError, match="grpo.inner_tol must be > 0 or null"):
        GRPOConfig(inner_tol=0.0)
    with pytest.raises(ValueError, match=r"grpo.max_inner_steps must be >= grpo.inner_steps \(8\)"):
        GRPOConfig(inner_tol=1e-3, inner_steps=8, max_inner_steps=4)
    GRPOConfig(inner_tol=None, inner_steps=8, max_inner_steps=4)  # the cap is unused without inner_tol
