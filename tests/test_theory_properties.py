"""Properties that docs/theory.md states for every question (C4..C7, E1), checked with hypothesis.

The ranges keep each claim's premise true: e.g. "eps > 0 keeps the limit below 1" needs 1 - p* to be
representable in float64, so beta * sqrt(eps) is bounded away from 0 there.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from grpo_amp import theory

PROPS = settings(max_examples=60, deadline=None, derandomize=True)

p_refs = st.floats(1e-3, 1 - 1e-3)
betas = st.floats(0.05, 50.0)
epsilons = st.sampled_from([0.0, 1e-4, 1e-2, 0.1])
group_sizes = st.sampled_from([None, 2, 4, 8, 16])


def _step(p, p_ref, kl, beta, beta_prev=0.0, **kw):
    return float(theory.pos_step(p, p_ref, kl=kl, beta=beta, beta_prev=beta_prev, **kw))


# --------------------------------------------------------------------------- C4: amplification
@PROPS
@given(p_ref=p_refs, beta=betas, eps=epsilons, group_size=group_sizes)
def test_every_fixed_point_exceeds_p_ref(p_ref, beta, eps, group_size):
    fps = theory.fixed_points(p_ref, beta, eps=eps, group_size=group_size)
    assert fps  # h(p_ref) > p_ref and h(1) <= 1: at least one root in (p_ref, 1]
    assert all(fp.p > p_ref for fp in fps)
    for fp in fps:
        assert fp.attracting == (abs(fp.slope) < 1.0)


@PROPS
@given(p_ref=p_refs, beta=betas, eps=epsilons, beta_prev=st.floats(0.1, 20.0))
def test_ref_and_both_never_fall_below_p_ref(p_ref, beta, eps, beta_prev):
    for kl in ("ref", "both"):
        traj = theory.pos_recurrence(p_ref, 30, kl=kl, beta=beta, beta_prev=beta_prev, eps=eps)
        assert np.all(traj[1:] > p_ref)
        limit = float(theory.predicted_limit(p_ref, beta, kl=kl, beta_prev=beta_prev, eps=eps))
        assert math.isnan(limit) or limit >= p_ref  # NaN: a 2-cycle (|h'| > 1), no limit


@PROPS
@given(p_ref=st.floats(0.01, 0.99), beta=betas, eps=epsilons)
def test_fixed_point_count_is_odd(p_ref, beta, eps):
    # eps = 0: zero or two interior roots plus p = 1; eps > 0: one or three (C4). A tangency (two
    # roots merging) is measure zero; a near-tangency inside one grid cell loses both, still odd.
    assert len(theory.fixed_points(p_ref, beta, eps=eps)) in (1, 3)


# --------------------------------------------------------------------------- C6: mirror
@PROPS
@given(p_ref=p_refs, beta=st.floats(0.05, 2.0), norm=st.sampled_from(theory.NORMS), eps=st.sampled_from([0.0, 0.01]))
def test_mirror_increases_to_one(p_ref, beta, norm, eps):
    traj = theory.pos_recurrence(p_ref, 80, kl="mirror", beta=beta, norm=norm, eps=eps)
    assert np.all(np.diff(traj) >= 0)
    assert traj[-1] > 0.999
    assert theory.predict(p_ref, beta, 1, kl="mirror", norm=norm, eps=eps).fixed_points == []


@PROPS
@given(p_ref=p_refs, beta=betas)
def test_mirror_logit_grows_at_least_two_over_beta(p_ref, beta):
    traj = theory.pos_recurrence(p_ref, 3, kl="mirror", beta=beta)
    x = theory.logit(traj)
    # Only below 1 - 1e-6: closer to 1, float64 p keeps too few digits of 1 - p for an exact logit.
    usable = traj[1:] < 1 - 1e-6
    with np.errstate(invalid="ignore"):  # inf - inf once p rounds to 1; masked out anyway
        steps = np.diff(x)
    assert np.all(steps[usable] >= 2.0 / beta - 1e-8)


# --------------------------------------------------------------------------- C5: mean_only
@PROPS
@given(p_ref=p_refs, beta=betas)
def test_mean_only_ref_is_constant_after_one_step(p_ref, beta):
    traj = theory.pos_recurrence(p_ref, 6, kl="ref", beta=beta, norm="mean_only")
    expected = 1 / (1 + (1 - p_ref) / p_ref * math.exp(-1 / beta))
    np.testing.assert_allclose(traj[1:], expected, rtol=1e-12)


@PROPS
@given(p=st.floats(0.0, 1.0), eps=st.sampled_from([1e-4, 0.01, 0.1]))
def test_mean_std_sum_symmetric_and_smallest_at_half(p, eps):
    s = sum(theory.advantage_weights(p, eps=eps))
    s_mirror = sum(theory.advantage_weights(1 - p, eps=eps))
    assert math.isclose(s, s_mirror, rel_tol=1e-12)
    assert s >= sum(theory.advantage_weights(0.5, eps=eps)) * (1 - 1e-12)


# --------------------------------------------------------------------------- C6: both
@PROPS
@given(p_ref=p_refs, beta=betas, eps=epsilons, beta_prev=st.floats(0.1, 50.0))
def test_both_shares_ref_fixed_points(p_ref, beta, eps, beta_prev):
    for fp in theory.fixed_points(p_ref, beta, eps=eps):
        # beta_prev drops out at a fixed point: p* = both-step(p*).
        got = _step(fp.p, p_ref, "both", beta, beta_prev, eps=eps)
        assert math.isclose(got, fp.p, rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(_step(fp.p, p_ref, "ref", beta, eps=eps), fp.p, rel_tol=1e-9, abs_tol=1e-12)


def test_both_limit_can_differ_from_ref():
    # docs/theory.md, C6: same fixed points, different limit from p_ref.
    assert float(theory.predicted_limit(0.02, 0.5, kl="ref")) == 1.0
    both = theory.predicted_limit(0.02, 0.5, kl="both", beta_prev=np.array([1.0, 5.0, 20.0]))
    np.testing.assert_allclose(both, 0.5287, atol=5e-5)
    assert float(theory.predicted_limit(0.1, 0.7, kl="ref")) == 1.0
    assert abs(float(theory.predicted_limit(0.1, 0.7, kl="both", beta_prev=1.0)) - 0.7537) < 5e-5


# --------------------------------------------------------------------------- C7: regularisation strength
BETA_GRID = np.logspace(-2, 3, 120)


@PROPS
@given(p_ref=st.floats(1e-3, 0.99), eps=epsilons, group_size=st.sampled_from([None, 8]))
def test_limit_non_increasing_in_beta(p_ref, eps, group_size):
    limits = theory.predicted_limit(p_ref, BETA_GRID, eps=eps, group_size=group_size)
    settled = limits[np.isfinite(limits)]  # drop 2-cycles (no limit)
    assert settled.size > BETA_GRID.size // 2
    assert np.all(np.diff(settled) <= 1e-12)


@PROPS
@given(p_ref=p_refs, eps=epsilons, group_size=st.sampled_from([None, 8]))
def test_limit_tends_to_p_ref_for_huge_beta(p_ref, eps, group_size):
    limit = float(theory.predicted_limit(p_ref, 1e6, eps=eps, group_size=group_size))
    # p* - p_ref ~ p_ref (1 - p_ref) S / beta <= 0.25 sqrt(7) / 1e6 here (S_8 <= sqrt(7); S(p) p(1-p) <= 1/2).
    assert p_ref < limit <= p_ref + 1e-6


@PROPS
@given(p_ref=p_refs, beta=st.floats(0.5, 50.0), eps=st.floats(0.01, 1.0))
def test_eps_keeps_limit_below_one(p_ref, beta, eps):
    limit = float(theory.predicted_limit(p_ref, beta, eps=eps))
    assume(not math.isnan(limit))
    assert limit < 1.0
    assert all(fp.p < 1.0 for fp in theory.fixed_points(p_ref, beta, eps=eps))


# --------------------------------------------------------------------------- E1: bounded S_G
def _s_g_bound(G: int, std: str) -> float:
    """max over k of A_G(r=1; (k+1)/G) - A_G(r=0; k/G): S_G is an average of these, so it is bounded."""
    factor = G / (G - 1) if std == "sample" else 1.0
    best = 0.0
    for k in range(G):
        q1, q0 = (k + 1) / G, k / G
        c_plus = (1 - q1) / math.sqrt(q1 * (1 - q1) * factor) if q1 < 1 else 0.0
        c_minus = q0 / math.sqrt(q0 * (1 - q0) * factor) if q0 > 0 else 0.0
        best = max(best, c_plus + c_minus)
    return best


P_GRID = np.linspace(0.0, 1.0, 1001)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(G=st.integers(2, 128), std=st.sampled_from(theory.STDS))
def test_finite_group_sum_is_bounded(G, std):
    s = sum(theory.finite_group_weights(P_GRID, G, std=std))
    bound = _s_g_bound(G, std)
    # The bound is reached at k = 0 (and k = G-1): sqrt(G-1) for the population std.
    expected = math.sqrt(G - 1) if std == "population" else (G - 1) / math.sqrt(G)
    assert math.isclose(bound, expected, rel_tol=1e-12)
    assert np.all(s <= bound * (1 + 1e-12))
    # ... and approached as p -> 0 or 1, where one reward class has all the group but one sample.
    for p_edge in (1e-6, 1 - 1e-6):
        s_edge = sum(theory.finite_group_weights(p_edge, G, std=std))
        assert math.isclose(float(s_edge), bound, rel_tol=1e-3)


@PROPS
@given(p_ref=st.floats(0.01, 0.99), beta=st.floats(0.2, 5.0))
def test_finite_group_limit_below_one(p_ref, beta):
    # S_G <= sqrt(G-1) so 1 - p* >= ((1-p_ref)/p_ref) e^{-sqrt(G-1)/beta} > 0: no "limit 1" at finite G.
    limit = float(theory.predicted_limit(p_ref, beta, group_size=8))
    assume(not math.isnan(limit))
    floor = (1 - p_ref) / p_ref * math.exp(-math.sqrt(7) / beta)
    assert 1 - limit >= floor / (1 + floor) * (1 - 1e-6)
