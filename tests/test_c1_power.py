"""How many fresh groups C1/E1's check needs to detect a 10% weight error (the default's ``c1_groups``).

The check is simulated on an independent replica whose truth is known: 256 questions, p_ref ~ Beta(2, 3),
12 iterations of C3 (kl=ref, beta = 1, mean_std) from p_ref; each check draws ``c1_groups`` groups of
G = 8 Bernoulli(p_{n-1}) rewards, takes the trainer's advantage (r - mean)/std (0 for a zero-spread
group) and the ratio pi_n/pi_{n-1} of a tilt by r alone (p_n/p_{n-1} on a success, (1-p_n)/(1-p_{n-1})
on a failure), so its expectation is E1's w+_G p_n - w-_G (1 - p_n) exactly. The noise ratio against
weights scaled by 1.1 and 0.9 is what the claims table would show for a theory 10% off.
"""

from __future__ import annotations

import numpy as np
import yaml

from grpo_amp import theory
from grpo_amp.analysis.stats import noise_ratio
from grpo_amp.config import CONF_DIR

TOL = 1.5  # criteria.TOLERANCE["noise_ratio"]


def simulate(c1_groups: int, factors=(1.0, 1.1, 0.9), group_size=8, n_iters=12, seed=0) -> dict[float, float]:
    rng = np.random.default_rng(seed)
    p_ref = np.random.default_rng(1).beta(2, 3, 256)
    traj = theory.pos_recurrence(p_ref, n_iters)
    sur, se, closed = [], [], []
    for n in range(1, n_iters + 1):
        p_prev, p_n = traj[n - 1], traj[n]
        r = rng.random((c1_groups, group_size, len(p_prev))) < p_prev          # (groups, G, Q)
        mean, std = r.mean(1, keepdims=True), r.std(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):  # the branch np.where drops: zero spread, p_{n-1} = 1
            adv = np.where(std > 0, (r - mean) / std, 0.0)
            ratio = np.where(r, p_n / p_prev, (1 - p_n) / (1 - p_prev))
        per_group = (ratio * adv).mean(1)                                       # (groups, Q)
        sur.append(per_group.mean(0))
        se.append(per_group.std(0, ddof=1) / np.sqrt(c1_groups))
        w_plus, w_minus = theory.finite_group_weights(p_prev, group_size)
        closed.append(w_plus * p_n - w_minus * (1 - p_n))
    sur, se, closed = (np.concatenate(x) for x in (sur, se, closed))
    return {f: noise_ratio(sur, f * closed, se) for f in factors}


def mean_ratios(c1_groups: int) -> dict[float, float]:
    runs = [simulate(c1_groups, seed=s) for s in range(3)]
    return {f: float(np.mean([r[f] for r in runs])) for f in runs[0]}


def test_64_groups_miss_a_10_percent_error_and_128_detect_it():
    at_64, at_128 = mean_ratios(64), mean_ratios(128)
    assert at_64[1.0] < TOL and at_128[1.0] < TOL          # the right weights fit at both sizes
    assert min(at_64[1.1], at_64[0.9]) < TOL                # 64 groups: one of x1.1, x0.9 passes as right
    assert min(at_128[1.1], at_128[0.9]) > TOL + 0.2        # 128 groups: both rejected, with margin


def test_default_tabular_sizing_draws_enough_groups():
    sizing = yaml.safe_load((CONF_DIR / "sizing" / "default_tabular.yaml").read_text())
    assert sizing["grpo"]["c1_groups"] >= 128
