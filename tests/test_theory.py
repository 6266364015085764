"""Closed-form theory (docs/theory.md C1..C7, E1, E4) against hand derivations and independent numerics.

Every expected number here is either written out from docs/theory.md's formulas by hand (plain ``math``),
computed by a generic method that knows nothing of the closed forms (scipy.optimize, Monte Carlo),
or quoted from docs/theory.md's check values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, special

from grpo_amp import theory


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --------------------------------------------------------------------------- advantage weights
@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("eps", [0.0, 0.01, 0.25])
def test_mean_std_weights_match_formula(p, eps):
    w_plus, w_minus = theory.advantage_weights(p, "mean_std", eps)
    sd = math.sqrt(p * (1 - p) + eps)
    assert w_plus == pytest.approx((1 - p) / sd, rel=1e-13)
    assert w_minus == pytest.approx(p / sd, rel=1e-13)
    assert w_plus + w_minus == pytest.approx(1 / sd, rel=1e-13)  # S(p)


def test_mean_std_weights_theory_md_numbers():
    # E1 quotes the population limit at p = 0.3: 1.528, 0.655.
    w_plus, w_minus = theory.advantage_weights(0.3)
    assert w_plus == pytest.approx(1.528, abs=5e-4)
    assert w_minus == pytest.approx(0.655, abs=5e-4)


def test_mean_std_weights_at_the_edges():
    # eps = 0: (1-p)/sqrt(p(1-p)) -> inf at p = 0 while p/sqrt(p(1-p)) = sqrt(p/(1-p)) -> 0.
    w_plus, w_minus = theory.advantage_weights([0.0, 1.0], "mean_std", 0.0)
    np.testing.assert_array_equal(w_plus, [np.inf, 0.0])
    np.testing.assert_array_equal(w_minus, [0.0, np.inf])
    # eps > 0 caps the weights at 1/sqrt(eps).
    w_plus, w_minus = theory.advantage_weights([0.0, 1.0], "mean_std", 0.04)
    np.testing.assert_allclose(w_plus, [5.0, 0.0], rtol=1e-14)
    np.testing.assert_allclose(w_minus, [0.0, 5.0], rtol=1e-14)


def test_mean_only_weights():
    p = np.array([0.0, 0.2, 0.7, 1.0])
    w_plus, w_minus = theory.advantage_weights(p, "mean_only")
    np.testing.assert_allclose(w_plus, 1 - p)
    np.testing.assert_allclose(w_minus, p)
    np.testing.assert_allclose(w_plus + w_minus, 1.0)  # S = 1 (C5)


def test_weights_keep_the_shape_of_p():
    w_plus, w_minus = theory.advantage_weights(np.full((3, 4), 0.4))
    assert w_plus.shape == w_minus.shape == (3, 4)


# --------------------------------------------------------------------------- C1: effective loss
def test_effective_loss_is_weighted_contrast():
    # E_{o~pi_prev}[pi/pi_prev * A] computed output by output equals w+ P_pi(r=1) - w- P_pi(r=0).
    rng = np.random.default_rng(11)
    pi_prev, pi = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
    correct = np.array([1, 0, 1, 0, 0, 1], bool)
    p_prev = pi_prev[correct].sum()
    w_plus, w_minus = theory.advantage_weights(p_prev)
    adv = np.where(correct, w_plus, -w_minus)
    lhs = np.sum(pi_prev * (pi / pi_prev) * adv)
    rhs = w_plus * pi[correct].sum() - w_minus * pi[~correct].sum()
    assert lhs == pytest.approx(rhs, rel=1e-12)


# --------------------------------------------------------------------------- E1: finite group
def _e1_by_hand(p: float, G: int, variance_factor: float, eps: float = 0.0) -> tuple[float, float]:
    """E1 written out: sum over K ~ Bin(G-1, p) other successes, A = 0 if all rewards are equal."""
    w_plus = w_minus = 0.0
    for k in range(G):
        pmf = math.comb(G - 1, k) * p**k * (1 - p) ** (G - 1 - k)
        q = (k + 1) / G  # this sample succeeded
        if q < 1:
            w_plus += pmf * (1 - q) / math.sqrt(q * (1 - q) * variance_factor + eps)
        q = k / G  # this sample failed
        if q > 0:
            w_minus += pmf * q / math.sqrt(q * (1 - q) * variance_factor + eps)
    return w_plus, w_minus


def test_e1_example_population_std():
    w_plus, w_minus = theory.finite_group_weights(0.3, 8, std="population")
    assert w_plus == pytest.approx(1.374, abs=5e-4)
    assert w_minus == pytest.approx(0.589, abs=5e-4)
    assert (w_plus, w_minus) == pytest.approx(_e1_by_hand(0.3, 8, 1.0), rel=1e-12)


def test_e1_example_sample_std():
    w_plus, w_minus = theory.finite_group_weights(0.3, 8, std="sample")
    assert w_plus == pytest.approx(1.285, abs=5e-4)
    assert w_minus == pytest.approx(0.551, abs=5e-4)
    assert (w_plus, w_minus) == pytest.approx(_e1_by_hand(0.3, 8, 8 / 7), rel=1e-12)


@pytest.mark.parametrize("G", [2, 3, 5, 16])
@pytest.mark.parametrize("p", [0.01, 0.3, 0.77])
def test_e1_matches_hand_sum_with_eps(G, p):
    for std, factor in (("population", 1.0), ("sample", G / (G - 1))):
        got = theory.finite_group_weights(p, G, eps=0.02, std=std)
        assert got == pytest.approx(_e1_by_hand(p, G, factor, eps=0.02), rel=1e-12)


@pytest.mark.parametrize("G", [2, 4, 8, 32])
def test_e1_mean_only_closed_form(G):
    p = np.linspace(0, 1, 11)
    w_plus, w_minus = theory.finite_group_weights(p, G, norm="mean_only")
    np.testing.assert_allclose(w_plus, (G - 1) * (1 - p) / G, atol=1e-14)
    np.testing.assert_allclose(w_minus, (G - 1) * p / G, atol=1e-14)


def test_e1_tends_to_population_limit():
    # Large G: the empirical group statistics approach p, so E1 -> the population weights.
    p = np.array([0.2, 0.5, 0.8])
    w_plus, w_minus = theory.finite_group_weights(p, 20000)
    ref_plus, ref_minus = theory.advantage_weights(p)
    np.testing.assert_allclose(w_plus, ref_plus, rtol=2e-3)
    np.testing.assert_allclose(w_minus, ref_minus, rtol=2e-3)


@pytest.mark.parametrize("std", ["population", "sample"])
@pytest.mark.parametrize("p", [0.3, 0.85])
def test_e1_against_monte_carlo(std, p):
    """Simulated groups of G Bernoulli(p) rewards, advantages as a trainer computes them."""
    G, n_groups = 8, 400_000
    rng = np.random.default_rng(1234)
    r = (rng.random((n_groups, G)) < p).astype(float)
    q = r.mean(axis=1, keepdims=True)
    v = q * (1 - q) * (G / (G - 1) if std == "sample" else 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        adv = np.where(v > 0, (r - q) / np.sqrt(v), 0.0)  # all-equal group: A = 0
    # Sample 0 of each group: conditioning on its reward leaves the other G-1 ~ Bin(G-1, p), as in E1.
    win, a0 = r[:, 0] == 1, adv[:, 0]
    mc_plus, mc_minus = a0[win], -a0[~win]
    w_plus, w_minus = theory.finite_group_weights(p, G, std=std)
    for mc, w in ((mc_plus, w_plus), (mc_minus, w_minus)):
        se = mc.std(ddof=1) / math.sqrt(mc.size)
        assert abs(mc.mean() - w) < 4 * se, (mc.mean(), w, se)


# --------------------------------------------------------------------------- C3: one step
P_PREV, P_REF, BETA, BETA_PREV = 0.3, 0.2, 0.5, 2.0
S_03 = 1 / math.sqrt(0.3 * 0.7)  # S(p_prev), mean_std, eps = 0


def test_pos_step_ref_by_hand():
    expected = _expit(_logit(P_REF) + S_03 / BETA)
    assert theory.pos_step(P_PREV, P_REF, "ref", BETA) == pytest.approx(expected, rel=1e-13)
    # The h(p) form of C3 gives the same number.
    h = 1 / (1 + (1 - P_REF) / P_REF * math.exp(-S_03 / BETA))
    assert theory.pos_step(P_PREV, P_REF, "ref", BETA) == pytest.approx(h, rel=1e-13)


def test_pos_step_mirror_by_hand():
    expected = _expit(_logit(P_PREV) + S_03 / BETA)
    assert theory.pos_step(P_PREV, P_REF, "mirror", BETA) == pytest.approx(expected, rel=1e-13)


def test_pos_step_both_by_hand():
    x = (BETA * _logit(P_REF) + BETA_PREV * _logit(P_PREV) + S_03) / (BETA + BETA_PREV)
    got = theory.pos_step(P_PREV, P_REF, "both", BETA, beta_prev=BETA_PREV)
    assert got == pytest.approx(_expit(x), rel=1e-13)


def test_pos_step_with_eps_mean_only_and_group():
    s_eps = 1 / math.sqrt(0.21 + 0.05)
    assert theory.pos_step(P_PREV, P_REF, "ref", BETA, eps=0.05) == pytest.approx(
        _expit(_logit(P_REF) + s_eps / BETA), rel=1e-13)
    assert theory.pos_step(P_PREV, P_REF, "mirror", BETA, norm="mean_only") == pytest.approx(
        _expit(_logit(P_PREV) + 1 / BETA), rel=1e-13)
    s_g = sum(_e1_by_hand(P_PREV, 8, 1.0))
    assert theory.pos_step(P_PREV, P_REF, "ref", BETA, group_size=8) == pytest.approx(
        _expit(_logit(P_REF) + s_g / BETA), rel=1e-12)


def test_pos_step_degenerate_anchor_stays_put():
    # p_ref = 0 (ref/both) or p_prev = 0 (mirror): no mass on correct outputs to tilt.
    assert theory.pos_step(0.5, 0.0, "ref", 1.0) == 0.0
    assert theory.pos_step(0.0, 0.3, "mirror", 1.0) == 0.0
    assert theory.pos_step(0.5, 1.0, "ref", 1.0) == 1.0
    assert theory.pos_step(0.5, 0.0, "both", 1.0, beta_prev=1.0) == 0.0


def test_pos_step_vectorises():
    p_prev = np.array([[0.1, 0.5], [0.3, 0.9]])
    got = theory.pos_step(p_prev, 0.2, "mirror", 1.5)
    expected = [[theory.pos_step(p, 0.2, "mirror", 1.5) for p in row] for row in p_prev]
    np.testing.assert_allclose(got, expected, rtol=1e-14)


def test_pos_recurrence_shape_and_rows():
    p_ref = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    out = theory.pos_recurrence(p_ref, 7, kl="ref", beta=0.8)
    assert out.shape == (8, 2, 3)
    np.testing.assert_array_equal(out[0], p_ref)
    for n in range(1, 8):  # each row is one pos_step of the previous one
        np.testing.assert_allclose(out[n], theory.pos_step(out[n - 1], p_ref, "ref", 0.8), rtol=1e-13)


def test_pos_recurrence_both_rows():
    out = theory.pos_recurrence(0.2, 5, kl="both", beta=0.5, beta_prev=3.0)
    assert out.shape == (6,)
    for n in range(1, 6):
        assert out[n] == pytest.approx(theory.pos_step(out[n - 1], 0.2, "both", 0.5, beta_prev=3.0), rel=1e-13)


def test_pos_recurrence_zero_iterations():
    out = theory.pos_recurrence([0.1, 0.7], 0)
    assert out.shape == (1, 2)
    np.testing.assert_array_equal(out[0], [0.1, 0.7])


# --------------------------------------------------------------------------- C2: one iteration's optimum
def _numerical_optimum(pi_prev, pi_ref, correct, kl, beta, beta_prev, adv):
    """Maximise E_pi[A] - beta KL(pi||pi_ref) [- beta_prev KL(pi||pi_prev)] over softmax logits."""
    b_ref = beta if kl in ("ref", "both") else 0.0
    b_prev = beta if kl == "mirror" else (beta_prev if kl == "both" else 0.0)

    def neg_objective(z):
        log_pi = z - special.logsumexp(z)
        pi = np.exp(log_pi)
        value = pi @ adv - b_ref * pi @ (log_pi - np.log(pi_ref)) - b_prev * pi @ (log_pi - np.log(pi_prev))
        # d value / d pi (the +1 of d(pi log pi) cancels in the softmax projection below).
        g = adv - b_ref * (log_pi - np.log(pi_ref)) - b_prev * (log_pi - np.log(pi_prev))
        return -value, -(pi * (g - pi @ g))

    res = optimize.minimize(neg_objective, np.zeros(len(adv)), jac=True, method="BFGS",
                            options={"gtol": 1e-12, "maxiter": 10_000})
    return special.softmax(res.x)


def _random_instance(rng, tilted: bool):
    K = int(rng.integers(5, 9))
    correct = np.zeros(K, bool)
    correct[rng.choice(K, size=int(rng.integers(1, K)), replace=False)] = True  # >= 1 right and wrong
    pi_ref = rng.dirichlet(np.ones(K))
    if tilted:  # pi_prev = pi_ref reweighted through r only, as for exact iterates (C3's assumption)
        pi_prev = pi_ref * np.where(correct, rng.uniform(0.2, 5.0), 1.0)
        pi_prev /= pi_prev.sum()
    else:
        pi_prev = rng.dirichlet(np.ones(K))
    return pi_prev, pi_ref, correct


KL_CASES = [("ref", 0.7, 0.0), ("mirror", 1.3, 0.0), ("both", 0.6, 2.5)]


@pytest.mark.parametrize("kl,beta,beta_prev", KL_CASES)
@pytest.mark.parametrize("group_size", [None, 8])
def test_tabular_optimum_is_the_maximiser(kl, beta, beta_prev, group_size):
    rng = np.random.default_rng(2024)
    for _ in range(4):
        pi_prev, pi_ref, correct = _random_instance(rng, tilted=False)
        p_prev = pi_prev[correct].sum()
        if group_size is None:
            w_plus, w_minus = theory.advantage_weights(p_prev)
        else:
            w_plus, w_minus = theory.finite_group_weights(p_prev, group_size)
        adv = np.where(correct, w_plus, -w_minus)
        closed = theory.tabular_optimum(pi_prev, pi_ref, correct, kl=kl, beta=beta, beta_prev=beta_prev,
                                        group_size=group_size)
        numeric = _numerical_optimum(pi_prev, pi_ref, correct, kl, beta, beta_prev, adv)
        np.testing.assert_allclose(closed, numeric, atol=1e-7)
        assert closed.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("kl,beta,beta_prev", KL_CASES)
@pytest.mark.parametrize("group_size", [None, 8])
def test_tabular_optimum_pos_is_pos_step(kl, beta, beta_prev, group_size):
    rng = np.random.default_rng(7)
    for _ in range(5):
        pi_prev, pi_ref, correct = _random_instance(rng, tilted=True)
        pi_n = theory.tabular_optimum(pi_prev, pi_ref, correct, kl=kl, beta=beta, beta_prev=beta_prev,
                                      group_size=group_size)
        step = theory.pos_step(pi_prev[correct].sum(), pi_ref[correct].sum(), kl=kl, beta=beta,
                               beta_prev=beta_prev, group_size=group_size)
        assert pi_n[correct].sum() == pytest.approx(float(step), abs=1e-10)


@pytest.mark.parametrize("kl", ["ref", "mirror"])
def test_pos_step_exact_for_any_previous_policy(kl):
    # ref and mirror need no assumption on pi_prev: their PoS depends on it only through p_prev.
    rng = np.random.default_rng(99)
    for _ in range(5):
        pi_prev, pi_ref, correct = _random_instance(rng, tilted=False)
        pi_n = theory.tabular_optimum(pi_prev, pi_ref, correct, kl=kl, beta=0.9)
        step = theory.pos_step(pi_prev[correct].sum(), pi_ref[correct].sum(), kl=kl, beta=0.9)
        assert pi_n[correct].sum() == pytest.approx(float(step), abs=1e-10)


def test_both_pos_form_breaks_for_generic_previous_policy():
    # docs/theory.md, C3: with pi_prev not an r-only reweighting of pi_ref, the PoS-only form is off.
    pi_ref = np.array([0.25, 0.25, 0.25, 0.25])
    pi_prev = np.array([0.49, 0.01, 0.25, 0.25])  # same PoS 0.5, mass moved inside the correct set
    correct = np.array([True, True, False, False])
    pi_n = theory.tabular_optimum(pi_prev, pi_ref, correct, kl="both", beta=1.0, beta_prev=1.0)
    step = theory.pos_step(0.5, 0.5, kl="both", beta=1.0, beta_prev=1.0)
    assert abs(pi_n[correct].sum() - step) > 0.01


def test_tabular_optimum_keeps_ref_ratios_within_reward_classes():
    # C2: under kl=ref the tilt depends on o only through r.
    rng = np.random.default_rng(5)
    pi_prev, pi_ref, correct = _random_instance(rng, tilted=False)
    ratio = theory.tabular_optimum(pi_prev, pi_ref, correct, kl="ref", beta=0.4) / pi_ref
    for cls in (correct, ~correct):
        np.testing.assert_allclose(ratio[cls], ratio[cls][0], rtol=1e-12)
    assert ratio[correct][0] > ratio[~correct][0]


# --------------------------------------------------------------------------- C4: fixed points
def _h(p, p_ref, beta, eps=0.0):
    s = 1 / math.sqrt(p * (1 - p) + eps)
    return 1 / (1 + (1 - p_ref) / p_ref * math.exp(-s / beta))


@pytest.mark.parametrize("p_ref,beta,eps", [(0.2, 1.0, 0.0), (0.05, 1.0, 0.0), (0.001, 1.0, 0.0),
                                            (0.2, 1.0, 0.01), (0.4, 3.0, 0.1)])
def test_fixed_points_solve_h_and_slope_is_derivative(p_ref, beta, eps):
    fps = theory.fixed_points(p_ref, beta, eps=eps)
    assert fps
    for fp in fps:
        assert fp.p > p_ref
        if fp.p == 1.0:
            continue
        assert _h(fp.p, p_ref, beta, eps) == pytest.approx(fp.p, rel=1e-10)
        d = 1e-6 * fp.p * (1 - fp.p)
        slope = (_h(fp.p + d, p_ref, beta, eps) - _h(fp.p - d, p_ref, beta, eps)) / (2 * d)
        assert fp.slope == pytest.approx(slope, rel=1e-5, abs=1e-7)
        assert fp.attracting == (abs(fp.slope) < 1)


def test_fixed_points_batch_on_the_theory_examples():
    """fixed_points_batch (the vectorised root finder) against docs/theory.md's check values (C4), not against
    fixed_points (which wraps it): p_ref=0.2, beta=1 has interior roots 0.6813 (h'=+0.39) and 0.9347
    (h'=+1.8); p_ref=0.5, beta=1 none; p_ref=0.05, beta=1 a root with h'=-0.40; p_ref=0.001, beta=1
    one with h'=-1.83. Each root also solves h(p) = p by an independent evaluation of h."""
    p_ref = np.array([0.2, 0.5, 0.05, 0.001])
    beta = np.ones(4)
    index, p, slope = theory.fixed_points_batch(p_ref, beta)
    interior = (p > 0) & (p < 1)
    np.testing.assert_allclose(sorted(p[(index == 0) & interior]), [0.6813, 0.9347], atol=5e-5)
    np.testing.assert_allclose(sorted(slope[(index == 0) & interior]), [0.39, 1.8], atol=0.05)  # "+1.8": two digits
    assert not ((index == 1) & interior).any()
    assert np.any(np.abs(slope[(index == 2) & interior] - (-0.40)) < 0.005)
    assert np.any(np.abs(slope[(index == 3) & interior] - (-1.83)) < 0.005)
    for i, root in zip(index[interior], p[interior]):
        assert _h(root, p_ref[i], beta[i], 0.0) == pytest.approx(root, rel=1e-9)


def test_fixed_points_finite_group_solve_recurrence():
    for fp in theory.fixed_points(0.2, 1.0, group_size=8):
        assert float(theory.pos_step(fp.p, 0.2, "ref", 1.0, group_size=8)) == pytest.approx(fp.p, rel=1e-10)


# --------------------------------------------------------------------------- docs/theory.md check values
def test_c4_example_p02_beta1():
    fps = theory.fixed_points(0.2, 1.0)
    assert [round(fp.p, 4) for fp in fps] == [0.6813, 0.9347, 1.0]
    assert fps[0].slope == pytest.approx(0.39, abs=0.005) and fps[0].attracting
    assert fps[1].slope == pytest.approx(1.8, abs=0.05) and not fps[1].attracting
    assert fps[2].attracting
    assert float(theory.predicted_limit(0.2, 1.0)) == pytest.approx(0.6813, abs=5e-5)


def test_c4_example_p05_beta1_no_interior_root():
    assert [fp.p for fp in theory.fixed_points(0.5, 1.0)] == [1.0]
    assert float(theory.predicted_limit(0.5, 1.0)) == 1.0


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_c4_example_small_beta_goes_to_one(beta):
    assert float(theory.predicted_limit(0.2, beta)) == 1.0


@pytest.mark.parametrize("eps", [1e-3, 0.01, 0.1])
def test_c4_eps_keeps_limit_below_one(eps):
    fps = theory.fixed_points(0.2, 1.0, eps=eps)
    assert len(fps) in (1, 3)
    assert all(fp.p < 1.0 for fp in fps)
    assert float(theory.predicted_limit(0.2, 1.0, eps=eps)) < 1.0


def test_c4_eps_upper_root_beyond_float_is_still_reported():
    # 1 - p* ~ 4 e^{-1/(beta sqrt eps)} = 4 e^{-1000}: p* is 1.0 in float64, and so is the limit.
    fps = theory.fixed_points(0.2, 0.1, eps=1e-4)
    assert len(fps) in (1, 3) and fps[-1].p == 1.0 and fps[-1].attracting
    assert float(theory.predicted_limit(0.2, 0.1, eps=1e-4)) == 1.0


def test_c4_negative_slope_example():
    fp = theory.fixed_points(0.05, 1.0)[0]
    assert fp.slope == pytest.approx(-0.40, abs=0.005) and fp.attracting


def test_c4_slope_beyond_minus_one_example():
    slopes = [fp.slope for fp in theory.fixed_points(0.001, 1.0)]
    assert any(abs(s - (-1.83)) < 0.005 for s in slopes)


@pytest.mark.parametrize("p_ref,beta", [(0.02, 0.5), (0.1, 0.7)])
def test_c4_overshoot_examples_go_to_one_under_ref(p_ref, beta):
    interior = [fp for fp in theory.fixed_points(p_ref, beta) if fp.p < 1]
    assert len(interior) == 2 and interior[0].attracting  # an attracting root exists ...
    assert float(theory.predicted_limit(p_ref, beta)) == 1.0  # ... but the first step jumps past both


@pytest.mark.parametrize("beta_prev", [1.0, 5.0, 20.0])
def test_c6_example_both_p002(beta_prev):
    got = float(theory.predicted_limit(0.02, 0.5, kl="both", beta_prev=beta_prev))
    assert got == pytest.approx(0.5287, abs=5e-5)


def test_c6_example_both_p01():
    got = float(theory.predicted_limit(0.1, 0.7, kl="both", beta_prev=1.0))
    assert got == pytest.approx(0.7537, abs=5e-5)


def test_e1_example_limits():
    limits = theory.predicted_limit(0.2, np.array([0.1, 0.5, 1.0, 2.0, 5.0]), group_size=8)
    assert limits[0] > 1 - 1e-6 and limits[0] < 1.0  # "1-": S_G is bounded, so never exactly 1
    np.testing.assert_allclose(limits[1:], [0.9767, 0.6249, 0.3910, 0.2715], atol=5e-5)


def test_c5_mean_only_example():
    expected = 1 / (1 + 4 * math.exp(-1))  # p_ref = 0.2, beta = 1
    traj = theory.pos_recurrence(0.2, 5, norm="mean_only", beta=1.0)
    np.testing.assert_allclose(traj[1:], expected, rtol=1e-13)


# --------------------------------------------------------------------------- predict (the CLI's source)
def test_predict_ref():
    pred = theory.predict(0.2, 1.0, 10)
    assert pred.trajectory.shape == (11,)
    assert pred.limit == pytest.approx(0.6813, abs=5e-5)
    assert [round(fp.p, 4) for fp in pred.fixed_points] == [0.6813, 0.9347, 1.0]


def test_predict_mirror_has_no_fixed_points_below_one():
    pred = theory.predict(0.2, 1.0, 5, kl="mirror")
    assert pred.fixed_points == [] and pred.limit == 1.0


def test_predict_both_reports_stability_of_the_both_step():
    # Root 0.0611 of p_ref = 0.001, beta = 1 repels under ref (h' = -1.83) but attracts under both:
    # the logit-space slope of the both step is (beta_prev + beta h')/(beta + beta_prev) = -0.416.
    pred = theory.predict(0.001, 1.0, 3, kl="both", beta_prev=1.0)
    fp = pred.fixed_points[0]
    assert fp.p == pytest.approx(0.0611, abs=5e-5)
    assert fp.slope == pytest.approx((1.0 - 1.8322534625) / 2, abs=1e-6) and fp.attracting
    d = 1e-7  # and it is the numerical derivative of the both step
    num = (theory.pos_step(fp.p + d, 0.001, "both", 1.0, beta_prev=1.0)
           - theory.pos_step(fp.p - d, 0.001, "both", 1.0, beta_prev=1.0)) / (2 * d)
    assert fp.slope == pytest.approx(float(num), abs=1e-5)


# --------------------------------------------------------------------------- E4: effective beta
def test_fit_effective_beta_recovers_beta():
    rng = np.random.default_rng(4)
    p_ref = rng.uniform(0.05, 0.6, 50)
    clean = theory.pos_recurrence(p_ref, 8, kl="ref", beta=0.7)
    noisy = clean + rng.normal(0.0, 0.005, clean.shape)
    noisy[0] = p_ref
    noisy = np.clip(noisy, 0.0, 1.0)
    beta, rmse = theory.fit_effective_beta(p_ref, noisy, kl="ref")
    assert beta == pytest.approx(0.7, rel=0.05)
    assert 0.003 < rmse < 0.007  # about the noise sd


def test_fit_effective_beta_exact_trajectory():
    p_ref = np.linspace(0.05, 0.5, 10)
    traj = theory.pos_recurrence(p_ref, 6, kl="mirror", beta=2.5)
    beta, rmse = theory.fit_effective_beta(p_ref, traj, kl="mirror")
    assert beta == pytest.approx(2.5, rel=1e-6) and rmse < 1e-7


# --------------------------------------------------------------------------- bad arguments
BAD_CALLS = [
    ("beta", "-1.0", lambda: theory.pos_step(0.2, 0.2, beta=-1.0)),
    ("beta", "0.0", lambda: theory.pos_recurrence(0.2, 3, beta=0.0)),
    ("beta", "-2.0", lambda: theory.fixed_points(0.2, -2.0)),
    ("beta", "0.0", lambda: theory.predicted_limit(0.2, [1.0, 0.0])),
    ("beta", "nan", lambda: theory.predicted_limit(0.2, float("nan"))),
    ("p", "1.5", lambda: theory.advantage_weights(1.5)),
    ("p", "-0.1", lambda: theory.finite_group_weights(-0.1, 8)),
    ("p", "nan", lambda: theory.advantage_weights(float("nan"))),
    ("p_ref", "1.2", lambda: theory.pos_recurrence(1.2, 3)),
    ("p_ref", "nan", lambda: theory.predicted_limit(float("nan"), 1.0)),
    ("p_prev", "2.0", lambda: theory.pos_step(2.0, 0.2)),
    ("p_ref", "-0.5", lambda: theory.fixed_points(-0.5, 1.0)),
    ("norm", "'std_only'", lambda: theory.advantage_weights(0.2, norm="std_only")),
    ("norm", "'x'", lambda: theory.pos_recurrence(0.2, 3, norm="x")),
    ("kl", "'forward'", lambda: theory.pos_step(0.2, 0.2, kl="forward")),
    ("kl", "'x'", lambda: theory.predicted_limit(0.2, 1.0, kl="x")),
    ("std", "'biased'", lambda: theory.finite_group_weights(0.2, 8, std="biased")),
    ("group_size", "1", lambda: theory.finite_group_weights(0.2, 1)),
    ("group_size", "1.5", lambda: theory.pos_step(0.2, 0.2, group_size=1.5)),
    ("group_size", "0", lambda: theory.predicted_limit(0.2, 1.0, group_size=0)),
    ("group_size", "inf", lambda: theory.pos_step(0.2, 0.2, group_size=float("inf"))),
    ("group_size", "nan", lambda: theory.pos_step(0.2, 0.2, group_size=float("nan"))),
    ("beta_prev", "0.0", lambda: theory.pos_step(0.2, 0.2, kl="both")),
    ("beta_prev", "-1.0", lambda: theory.predicted_limit(0.2, 1.0, kl="both", beta_prev=-1.0)),
    ("beta_prev", "-1.0", lambda: theory.pos_step(0.2, 0.2, kl="ref", beta_prev=-1.0)),
    ("eps", "-0.1", lambda: theory.advantage_weights(0.2, eps=-0.1)),
]


@pytest.mark.parametrize("name,value,call", BAD_CALLS, ids=[f"{n}={v}" for n, v, _ in BAD_CALLS])
def test_bad_arguments_name_argument_and_value(name, value, call):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert message.startswith(name + " "), message
    assert f"got {value}" in message, message
    assert "np.float64" not in message and "array(" not in message  # one clean line for the CLI


def test_binomial_pmf_against_math_comb_and_the_direct_formula():
    """_binom_pmf against C(n, k) p^k (1-p)^(n-k) from math.comb (a closed form on another path), and bit for bit
    against the per-k xlogy/xlog1py formula it replaced (plumbing: its speed-up must not move a digit), edge cases
    p = 0, 1, nan included."""
    import math

    from scipy import special

    from grpo_amp.theory import _binom_pmf

    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 15, 63):
        p = np.concatenate([rng.random(200), [0.0, 1.0, 1e-300, 1 - 1e-16, 0.5, np.nan]])
        pmf = _binom_pmf(n, p)
        k = np.arange(n + 1, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            direct = np.exp(special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
                            + special.xlogy(k, p[:, None]) + special.xlog1py(n - k, -p[:, None]))
        np.testing.assert_array_equal(pmf, direct)
        by_comb = np.array([[math.comb(n, j) * q ** j * (1 - q) ** (n - j) for j in range(n + 1)] for q in p[:-1]])
        np.testing.assert_allclose(pmf[:-1], by_comb, rtol=1e-9, atol=1e-300)
        np.testing.assert_allclose(pmf[:-1].sum(-1), 1.0, rtol=1e-12)
        assert np.isnan(pmf[-1]).all()
