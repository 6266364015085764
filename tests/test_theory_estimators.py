"""E6, the GRPO family of advantage estimators, against docs/theory.md's check values and an oracle.

Two independent sources for every number:
- docs/theory.md E6's check values (quoted to their printed digits);
- exact enumeration of all 2^G reward patterns of a group, with each trainer's advantage formula
  written out here per pattern (numpy on one group, itertools for pass@k's subsets), the expected
  objective of C1 computed as an importance-weighted sum under pi_{n-1}'s law of the group (given
  spread, for dynamic sampling). Nothing of grpo_amp.theory's binomial sums is used by the oracle.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from grpo_amp import theory

G = 8
TRL = dict(std="sample", eps=1e-4, eps_inside=False)     # TRL: (r - mean)/(sample std + 1e-4)
VERL = dict(std="sample", eps=1e-6, eps_inside=False)    # verl: (r - mean)/(sample std + 1e-6)
ESTIMATORS = {  # name -> theory keywords (docs/theory.md E6)
    "grpo": {},
    "grpo_sample": dict(std="sample"),
    "trl_default": TRL,
    "verl": VERL,
    "dr_grpo": dict(norm="mean_only"),
    "rloo": dict(norm="rloo"),
    "batch": dict(batch_std=0.5, eps=1e-4, eps_inside=False),
    "dapo": dict(VERL, dynamic_sampling=True),
    "pass2": dict(pass_k=2),
    "pass4": dict(pass_k=4),
}


# --------------------------------------------------------------------------- the oracle
def _group_advantage(r: np.ndarray, norm="mean_std", eps=0.0, std="population", eps_inside=True,
                     batch_std=None, pass_k=None, dynamic_sampling=False) -> np.ndarray:
    """One group's advantages, written out as each trainer computes them (not theory's algebra)."""
    r = r.astype(float)
    if pass_k is not None:
        subsets = list(itertools.combinations(range(len(r)), pass_k))
        R = np.array([r[list(s)].max() for s in subsets])          # best member of each k-subset
        sd = R.std()                                                # population std over the subsets
        if sd == 0:
            return np.zeros_like(r)
        A_s = (R - R.mean()) / (math.sqrt(sd ** 2 + eps) if eps_inside else sd + eps)
        return np.array([np.mean([a for a, s in zip(A_s, subsets) if i in s]) for i in range(len(r))])
    if (r == r[0]).all():
        return np.zeros_like(r)                                     # zero spread: no signal
    if norm == "rloo":
        return r - (r.sum() - r) / (len(r) - 1)                     # mean of the other G - 1
    centred = r - r.mean()
    if norm == "mean_only":
        return centred
    sd = batch_std if batch_std is not None else r.std(ddof=1 if std == "sample" else 0)
    return centred / (math.sqrt(sd ** 2 + eps) if eps_inside else sd + eps)


def _enumerated_weights(p: float, group_size: int, **kw) -> tuple[float, float]:
    """(w+, w-) as C1's objective E[(1/G) sum_i ratio_i A_i] at pi with P(r=1) = 1 and = 0.

    Groups of pi_{n-1} (P(r=1) = p), conditioned on spread under dynamic sampling; the ratio of a
    two-point pi is P_pi(r_i)/P_old(r_i). Objective(pi: P(r=1)=1) = w+, objective(P(r=1)=0) = -w-.
    """
    objective = {1: 0.0, 0: 0.0}
    total = 0.0
    for bits in itertools.product((0, 1), repeat=group_size):
        r = np.array(bits)
        if kw.get("dynamic_sampling") and (r == r[0]).all():
            continue                                                # discarded and redrawn
        prob = p ** r.sum() * (1 - p) ** (group_size - r.sum())
        total += prob
        adv = _group_advantage(r, **kw)
        for target in (1, 0):
            ratio = np.where(r == target, 1.0 / np.where(r == 1, p, 1 - p), 0.0)
            objective[target] += prob * float(np.mean(ratio * adv))
    return objective[1] / total, -objective[0] / total


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("group_size", [3, 5, 8])
def test_weights_equal_enumeration_of_all_reward_patterns(name, group_size):
    kw = ESTIMATORS[name]
    if kw.get("pass_k", 0) >= group_size:
        pytest.skip("pass_k must be < G")
    for p in (0.05, 0.3, 0.77):
        expected = _enumerated_weights(p, group_size, **kw)
        got = theory.finite_group_weights(p, group_size, **kw)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13, err_msg=f"{name} G={group_size} p={p}")


# --------------------------------------------------------------------------- E6's check values
@pytest.mark.parametrize("name, w_plus, w_minus", [
    ("grpo", 1.3739, 0.5888), ("trl_default", 1.2849, 0.5507), ("verl", 1.2852, 0.5508),
    ("dr_grpo", 0.6125, 0.2625), ("rloo", 0.7, 0.3), ("dapo", 1.3639, 0.5845)])
def test_e6_weights_at_p_0_3(name, w_plus, w_minus):
    got = theory.finite_group_weights(0.3, G, **ESTIMATORS[name])
    np.testing.assert_allclose(got, (w_plus, w_minus), atol=5e-5)
    # the zero-sum identity p w+ = (1 - p) w- of every member
    assert 0.3 * got[0] == pytest.approx(0.7 * got[1], rel=1e-12)


def test_e6_grpo_sum_and_sample_std_rescaling():
    w = theory.finite_group_weights(0.3, G)
    assert sum(w) == pytest.approx(1.9627, abs=5e-5)
    # sample std, eps = 0: exactly sqrt((G-1)/G) times E1's weights (beta_eff = beta sqrt(G/(G-1)))
    ws = theory.finite_group_weights(np.linspace(0.01, 0.99, 11), G, std="sample")
    wp = theory.finite_group_weights(np.linspace(0.01, 0.99, 11), G)
    np.testing.assert_allclose(ws, np.array(wp) * math.sqrt((G - 1) / G), rtol=1e-13)


def test_e6_dr_grpo_and_rloo_are_mean_only_rescaled():
    p = np.linspace(0.0, 1.0, 13)
    np.testing.assert_allclose(sum(theory.finite_group_weights(p, G, norm="mean_only")), (G - 1) / G, rtol=1e-13)
    np.testing.assert_allclose(sum(theory.finite_group_weights(p, G, norm="rloo")), 1.0, rtol=1e-13)


def test_e6_dapo_at_p_0_05():
    w_plus, w_minus = theory.finite_group_weights(0.05, G, **ESTIMATORS["dapo"])
    assert (w_plus, w_minus, w_plus + w_minus) == (pytest.approx(6.5294, abs=5e-5), pytest.approx(0.3437, abs=5e-5),
                                                   pytest.approx(6.8731, abs=5e-5))


def test_e6_batch_is_mean_only_over_sigma_b():
    # S = (G-1)/(G (sigma_b + eps)) for every p
    s = sum(theory.finite_group_weights(np.linspace(0.0, 1.0, 9), G, **ESTIMATORS["batch"]))
    np.testing.assert_allclose(s, (G - 1) / (G * (0.5 + 1e-4)), rtol=1e-13)


@pytest.mark.parametrize("name, from_02, from_005", [
    ("grpo", 0.6249, 0.2778), ("grpo_sample", 0.5914, 0.2575), ("trl_default", 0.5913, 0.2574),
    ("dr_grpo", 0.3749, 0.1121), ("rloo", 0.4046, 0.1252), ("batch", 0.5899, 0.2324), ("dapo", 0.5999, 1.0)])
def test_e6_limits_from_p_ref(name, from_02, from_005):
    got = theory.predicted_limit([0.2, 0.05], 1.0, kl="ref", group_size=G, **ESTIMATORS[name])
    np.testing.assert_allclose(got, [from_02, from_005], atol=5e-5)


@pytest.mark.parametrize("k, limit", [(2, 0.4091), (4, 0.2884)])
def test_e6_pass_k_limits(k, limit):
    assert float(theory.predicted_limit(0.2, 1.0, group_size=G, pass_k=k)) == pytest.approx(limit, abs=5e-5)


def test_pass_k_pushes_towards_hard_questions():
    p = np.array([0.1, 0.5, 0.9, 0.99])
    s = sum(theory.finite_group_weights(p, G, pass_k=4))
    assert np.all(np.diff(s) < 0) and s[-1] < 0.05 * s[0]   # S falls towards 0 as p -> 1


def test_e6_dapo_fixed_points_and_runaway():
    fps = theory.fixed_points(0.2, 1.0, group_size=G, **ESTIMATORS["dapo"])
    assert [round(fp.p, 4) for fp in fps] == [0.5999, 0.8845, 1.0]
    assert [fp.attracting for fp in fps] == [True, False, True]
    # from p_ref 0.05 the first step overshoots the unstable root 0.9376 and p_n -> 1
    fps = theory.fixed_points(0.05, 1.0, group_size=G, **ESTIMATORS["dapo"])
    unstable = [fp.p for fp in fps if not fp.attracting]
    assert unstable == [pytest.approx(0.9376, abs=5e-5)]
    traj = theory.pos_recurrence(0.05, 6, group_size=G, **ESTIMATORS["dapo"])
    assert traj[1] == pytest.approx(0.98, abs=5e-3) and traj[1] > unstable[0]
    assert np.all(np.diff(traj) >= 0) and traj[-1] == 1.0
    pred = theory.predict(0.05, 1.0, 4, group_size=G, **ESTIMATORS["dapo"])
    assert pred.limit == 1.0 and pred.runs_to_one
    assert not theory.predict(0.2, 1.0, 4, group_size=G, **ESTIMATORS["dapo"]).runs_to_one
    # without dynamic sampling the same advantage has one bounded, attracting fixed point
    assert [fp.attracting for fp in theory.fixed_points(0.05, 1.0, group_size=G, **VERL)] == [True]


def test_dapo_stability_slope_matches_finite_difference():
    kw = dict(group_size=G, **ESTIMATORS["dapo"])
    for fp in theory.fixed_points(0.2, 1.0, **kw)[:2]:
        h = 1e-6
        up, down = (float(theory.pos_step(fp.p + d, 0.2, beta=1.0, **kw)) for d in (h, -h))
        assert fp.slope == pytest.approx((up - down) / (2 * h), rel=1e-5)


@pytest.mark.parametrize("name, steps", [("grpo", 3), ("dr_grpo", 7), ("rloo", 6), ("pass4", 82315)])
def test_e6_mirror_steps_from_0_2_to_0_99(name, steps):
    assert theory.steps_to_reach(0.2, 0.99, kl="mirror", beta=1.0, group_size=G, **ESTIMATORS[name]) == steps


def test_redraws_expectation_g_over_z():
    # Redraws are Geometric(Z): G/Z samples expected, 104 at p = 0.01, G = 8 (docs/theory.md E6)
    z = 1 - 0.01 ** G - 0.99 ** G
    assert G / z == pytest.approx(104, abs=0.5)
    # the weights carry exactly that 1/Z
    w_d = theory.finite_group_weights(0.01, G, dynamic_sampling=True)
    w = theory.finite_group_weights(0.01, G)
    np.testing.assert_allclose(w_d, np.array(w) / z, rtol=1e-12)


def test_defaults_unchanged_by_new_keywords():
    p = np.linspace(0.01, 0.99, 21)
    np.testing.assert_array_equal(theory.finite_group_weights(p, G, eps=1e-4, std="trl"),
                                  theory.finite_group_weights(p, G, **TRL))
    np.testing.assert_array_equal(theory.predicted_limit(p, 0.5, group_size=G),
                                  theory.predicted_limit(p, 0.5, group_size=G, eps_inside=True,
                                                         dynamic_sampling=False, batch_std=None, pass_k=None))


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw, field", [
    (dict(norm="zscore"), "norm"), (dict(pass_k=8), "pass_k"), (dict(pass_k=0), "pass_k"),
    (dict(eps=-1e-4), "eps"), (dict(batch_std=-0.5), "batch_std"), (dict(std="biased"), "std"),
    (dict(dynamic_sampling="yes"), "dynamic_sampling"), (dict(eps_inside=None), "eps_inside"),
    (dict(batch_std=0.5, norm="rloo"), "batch_std")])
def test_bad_estimator_names_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        theory.finite_group_weights(0.3, G, **kw)


def test_a_batch_with_no_spread_divides_by_eps_alone():
    """sigma_b = 0 (every question of the batch at p = 0 or 1, as R2's batch run reaches at default) is the
    denominator TRL's eps alone keeps positive: the weights are the oracle's (r - mean)/(0 + eps); without
    eps it has no value and is refused. (The default study's predict stage once crashed here.)"""
    p = 0.3
    kw = dict(batch_std=0.0, eps=1e-4, eps_inside=False)
    np.testing.assert_allclose(theory.finite_group_weights(p, G, **kw), _enumerated_weights(p, G, **kw), rtol=1e-9)
    assert np.isfinite(theory.pos_step(np.array([1.0, 0.0, 0.4]), np.array([0.5, 0.5, 0.4]), **kw,
                                       group_size=G)).all()
    with pytest.raises(ValueError, match="batch_std"):
        theory.finite_group_weights(p, G, batch_std=0.0, eps=0.0)


@pytest.mark.parametrize("kw", [dict(eps=1e-4, eps_inside=False, std="sample"), dict(dynamic_sampling=True),
                                dict(pass_k=2), dict(norm="rloo"), dict(batch_std=0.3, eps=1e-4, eps_inside=False)])
def test_fit_effective_beta_recovers_beta_under_every_estimator(kw):
    """E4's fit of an exact C3_G trajectory returns its beta for each estimator. Its coarse grid once
    ignored the estimator's keywords: dynamic sampling fitted 0.398 and pass@2 1.585 for a true 0.7."""
    p_ref = np.linspace(0.05, 0.6, 10)
    traj = theory.pos_recurrence(p_ref, 8, beta=0.7, group_size=G, **kw)
    beta, rmse = theory.fit_effective_beta(p_ref, traj, group_size=G, **kw)
    assert beta == pytest.approx(0.7, rel=1e-6) and rmse < 1e-7


def test_dynamic_sampling_needs_a_group():
    with pytest.raises(ValueError, match="group_size"):
        theory.finite_group_weights(0.3, 1, dynamic_sampling=True)
    with pytest.raises(ValueError, match="dynamic_sampling"):
        theory.pos_step(0.3, 0.3, dynamic_sampling=True)
    with pytest.raises(ValueError, match="pass_k"):
        theory.predicted_limit(0.3, 1.0, pass_k=2)


# --------------------------------------------------------------------------- the shape test
@pytest.mark.parametrize("kl", ["mirror", "ref"])
def test_shape_test_recovers_beta_and_tells_shapes_apart(kl):
    rng = np.random.default_rng(0)
    p_prev = rng.uniform(0.02, 0.98, 400)
    p_ref = rng.uniform(0.02, 0.6, 400) if kl == "ref" else None
    anchor = p_prev if kl == "mirror" else p_ref
    kw = dict(group_size=G, **ESTIMATORS["verl"])
    p_n = theory.pos_step(p_prev, anchor, kl=kl, beta=2.5, **kw)
    fit = theory.shape_test(p_prev, p_n, p_ref, kl=kl, **kw)
    assert fit.slope == pytest.approx(1 / 2.5, rel=1e-10) and fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.beta_eff == pytest.approx(2.5, rel=1e-10) and fit.n == 400
    # a wrong step size moves only the slope; a wrong shape (pass@4's S) lowers R^2
    wrong = theory.shape_test(p_prev, p_n, p_ref, kl=kl, group_size=G, pass_k=4)
    assert wrong.r2 < 0.9
    # a constant S (dr_grpo) has no shape: R^2 is NaN, the slope is still a step size
    flat = theory.shape_test(p_prev, p_n, p_ref, kl=kl, group_size=G, norm="mean_only")
    assert np.isnan(flat.r2) and flat.slope > 0
    noisy = theory.pos_step(p_prev, anchor, kl=kl, beta=2.5, **kw) * rng.uniform(0.97, 1.0, 400)
    assert theory.shape_test(p_prev, noisy, p_ref, kl=kl, **kw).r2 < 0.999


def test_shape_test_bad_input():
    with pytest.raises(ValueError, match="kl"):
        theory.shape_test([0.2], [0.3], kl="both")
    with pytest.raises(ValueError, match="p_ref"):
        theory.shape_test([0.2, 0.3], [0.3, 0.4], kl="ref")
    with pytest.raises(ValueError, match="p_prev"):
        theory.shape_test([0.2, 0.3], [0.3], kl="mirror")
