"""E5's tabular ladder as a 2 x 2 x 2 factorial: the three new cells (grpo.rungs), the attribution
(grpo_amp.analysis.factorial) against a brute-force average over the 3! orders, and a fresh smoke run's files."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from grpo_amp import registry
from grpo_amp.analysis import factorial as F
from grpo_amp.config import Config, GRPOConfig
from grpo_amp.grpo import rungs as R
from grpo_amp.grpo import updates
from grpo_amp.io import InputError
from grpo_amp.grpo.pos import pos_exact
from grpo_amp.schema import ATTRIBUTION_COLUMNS, FACTORIAL_COLUMNS

from helpers.rungs import _apply, _c3, _setup, _variant


def _brute_shapley(v: dict[tuple[int, ...], float]) -> np.ndarray:
    """Each factor's marginal change v(S + i) - v(S), averaged over the 3! orders of making the changes."""
    parts = np.zeros(3)
    orders = list(itertools.permutations(range(3)))
    for order in orders:
        z = [0, 0, 0]
        for i in order:
            before = v[tuple(z)]
            z[i] = 1
            parts[i] += v[tuple(z)] - before
    return parts / len(orders)


# --------------------------------------------------------------------------- the registry's cells
def test_every_cell_has_one_policy_and_the_five_rungs_sit_where_e5_puts_them():
    assert len(registry.CELLS) == 8 and set(registry.CELLS) == {F.cell_of(c) for c in F.CODES}
    rung_of = {registry.POLICIES[p].rung: cell for cell, p in registry.CELLS.items()}
    assert rung_of == {"R1": ("true_p", "argmax", "exact"), "R2": ("group", "argmax", "exact"),
                       "R3": ("group", "steps", "exact"), "R5": ("group", "argmax", "one_group"),
                       "R6": ("group", "steps", "one_group"), None: rung_of[None]}
    new = {p for cell, p in registry.CELLS.items() if registry.POLICIES[p].rung is None}
    assert new == {"tabular_true_p_steps", "tabular_true_p_group_argmax", "tabular_true_p_sgd"}
    # a cell samples exactly when its objective is one group
    assert all(registry.POLICIES[p].sampled == (cell[2] == "one_group") for cell, p in registry.CELLS.items())


# --------------------------------------------------------------------------- the cells on a table
def test_true_p_argmax_exact_cell_is_c3():
    """The (true_p, argmax, exact) cell, its update found through the registry and updates.LOOPS, lands on C3
    to the optimiser's 1e-6."""
    v = _variant("ref", "mean_std", 0.0)
    update = updates.LOOPS[registry.CELLS[("true_p", "argmax", "exact")]].keywords["update"]
    pi, old, ref, _, qs, _ = _apply(update, v)
    err = np.abs(pos_exact(pi, qs)[0] - _c3(old, ref, qs, v))
    assert err.max() < 1e-6


def test_true_p_steps_approach_r1_as_steps_grow():
    """(true_p, steps, exact) -> (true_p, argmax, exact) = C3 as M grows, as R3 -> R2."""
    v = _variant("ref", "mean_std", 0.0)
    _, _, ref, old, qs, _ = _setup()
    target = _c3(old, ref, qs, v)
    gaps = [np.abs(pos_exact(_apply(R.true_p_exact_steps, v, inner_steps=M, lr=0.1)[0], qs)[0] - target).mean()
            for M in (1, 8, 64, 400)]
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3] and gaps[3] < 2e-3 and gaps[0] > 0.02, gaps


def test_true_p_one_group_argmax_is_that_groups_maximiser_with_true_p_advantages():
    """Closed form against L-BFGS on the same group's objective, with A_i = A(r_i; p_old) written out by hand."""
    v = _variant("both", "mean_std", 0.0)
    tc, task, ref, old, qs, _ = _setup(seed=4)
    cfg = Config(variant=v, task=tc, grpo=GRPOConfig(group_size=3))
    pi = old.frozen_copy().requires_grad_(True)
    R.true_p_one_group_argmax(pi, old, ref, task, qs, cfg, torch.Generator().manual_seed(2))
    rollout = old.sample(qs, 3, torch.Generator().manual_seed(2))   # the same group again
    rewards = task.reward(rollout).double()
    p = pos_exact(old, qs)[0]
    p = torch.as_tensor(p)[:, None]
    adv = torch.where(rewards > 0.5, torch.sqrt((1 - p) / p), -torch.sqrt(p / (1 - p)))  # docs/theory.md's A, eps = 0
    log_old, log_ref = torch.log_softmax(old.logits[qs], -1), torch.log_softmax(ref.logits[qs], -1)
    a = R.one_group_advantage(rollout, adv, log_old)
    numeric = torch.softmax(R.maximise(a, log_ref, log_old, v, 1e-7, 2000), -1).numpy()
    np.testing.assert_allclose(pi.probs()[qs.numpy()], numeric, rtol=0, atol=1e-6)
    # unlike R5, a zero-spread group moves pi: the true p's A is not 0 there
    zero = (rewards == rewards[:, :1]).all(1).numpy()
    assert zero.any()
    r5 = old.frozen_copy().requires_grad_(True)
    R.one_group_argmax(r5, old, ref, task, qs, cfg, torch.Generator().manual_seed(2))
    assert np.abs(pi.probs()[qs.numpy()][zero] - r5.probs()[qs.numpy()][zero]).max() > 1e-3


def test_one_group_level_has_the_exact_level_as_its_expectation():
    """E over outputs of pi_old of a(o) = A(r_i; p_old) [o_i = o] / (G pi_old(o)) is A(o): one group of
    G = 200000 outputs per question gives the population objective of every pi (here pi_ref) to ~1e-2."""
    v = _variant("ref", "mean_std", 0.05)
    _, task, ref, old, qs, _ = _setup(seed=5)
    G = 200_000
    rollout = old.sample(qs, G, torch.Generator().manual_seed(0))
    correct = task.correct[qs]
    p_old, q_old = R._success_mass(old.logits[qs], correct)
    adv, _ = R.true_p_advantages(p_old, q_old, v)(task.reward(rollout))
    log_old = torch.log_softmax(old.logits[qs], -1)
    a = R.one_group_advantage(rollout, adv, log_old)
    pi = torch.softmax(ref.logits[qs], -1)
    sampled = (pi * a).sum(-1)
    exact = (pi * R._per_output(correct, *R.population_advantage(p_old, q_old, v))).sum(-1)
    assert torch.abs(sampled - exact).max() < 0.03 and torch.abs(exact).max() > 0.1, (sampled, exact)


def test_true_p_sgd_with_a_huge_group_matches_true_p_exact_steps():
    """(true_p, steps, one_group) -> (true_p, steps, exact) as one group grows (G = 20000): the objective
    factor is the only change; and at G = 8 the two differ (the one group's noise)."""
    v = _variant("ref", "mean_std", 0.0)
    qs = _setup()[4]
    exact = pos_exact(_apply(R.true_p_exact_steps, v, inner_steps=12, lr=0.1)[0], qs)[0]
    big = pos_exact(_apply(R.true_p_group_steps, v, group_size=20000, inner_steps=12, lr=0.1)[0], qs)[0]
    small = pos_exact(_apply(R.true_p_group_steps, v, group_size=8, inner_steps=12, lr=0.1)[0], qs)[0]
    assert np.abs(big - exact).mean() < 0.01 and np.abs(small - exact).mean() > 0.03


def test_true_p_sgd_is_r6_draw_for_draw_with_only_the_advantage_changed():
    """mean_only: the group's A = r - group mean, the true p's A = r - p_old. With the true p's A handed to
    the trainer by hand, grpo_update gives exactly tabular_true_p_sgd's table (same draws)."""
    from grpo_amp.grpo.trainer import grpo_update

    v = _variant("ref", "mean_only", 0.0)
    cell = _apply(R.true_p_group_steps, v, generator_seed=3, group_size=8, inner_steps=4)[0]
    _, _, _, old, qs, _ = _setup()
    p = torch.as_tensor(pos_exact(old, qs)[0])

    def by_hand(rewards):
        return rewards.double() - p[:, None], (rewards == rewards[:, :1]).all(1)
    wired = _apply(lambda *a: grpo_update(*a, advantages=by_hand), v, generator_seed=3, group_size=8, inner_steps=4)[0]
    r6 = _apply(grpo_update, v, generator_seed=3, group_size=8, inner_steps=4)[0]
    # the same up to the rounding of 1 - p (the rung sums 1 - p on the incorrect set, by hand it is 1.0 - p)
    np.testing.assert_allclose(cell.logits.detach().numpy(), wired.logits.detach().numpy(), rtol=0, atol=1e-9)
    assert np.abs(cell.logits.detach().numpy() - r6.logits.detach().numpy()).max() > 1e-3


# --------------------------------------------------------------------------- the attribution
def test_shapley_weights_equal_the_brute_force_order_average_on_a_hand_made_table():
    # a table with every interaction present: v(z) = 1 + 2 a + 3 b + 5 c + 7 ab - 11 ac + 13 bc + 17 abc
    v = {z: 1 + 2 * z[0] + 3 * z[1] + 5 * z[2] + 7 * z[0] * z[1] - 11 * z[0] * z[2] + 13 * z[1] * z[2]
         + 17 * z[0] * z[1] * z[2] for z in F.CODES}
    vec = np.array([v[z] for z in F.CODES])
    parts = F.shapley_weights() @ vec
    np.testing.assert_allclose(parts, _brute_shapley(v), atol=1e-12)
    # Harsanyi: each dividend split equally among its factors
    np.testing.assert_allclose(parts, [2 + 7 / 2 - 11 / 2 + 17 / 3, 3 + 7 / 2 + 13 / 2 + 17 / 3,
                                       5 - 11 / 2 + 13 / 2 + 17 / 3], atol=1e-12)
    assert parts.sum() == pytest.approx(v[(1, 1, 1)] - v[(0, 0, 0)])
    # the chain order (a, b, c) and the 2^3 design's effects
    np.testing.assert_allclose(F.chain_weights() @ vec, [2, 3 + 7, 5 - 11 + 13 + 17], atol=1e-12)
    assert F.contrast_weights((0,)) @ vec == pytest.approx(2 + 7 / 2 - 11 / 2 + 17 / 4)
    assert F.contrast_weights((0, 1, 2)) @ vec == pytest.approx(17 / 4)


def _fake_study(gaps: dict[tuple[str, ...], list[float]], variant: str = "mean_std_ref", seed0: int = 0):
    """runs and predict frames whose per-seed gap (one train question, iteration 1) is the given number."""
    runs, predictions = [], {}
    for cell, per_seed in gaps.items():
        policy = registry.CELLS[cell]
        runs.append({"policy": policy, "run": variant, "variant": variant, "sweep": "variant"})
        predictions[(policy, variant)] = pd.DataFrame(
            [{"question": 0, "seed": seed0 + s, "split": split, "iteration": n, "pos": 0.5 + (g if n else 0) * sign,
              "pred_trajectory": 0.5} for s, g in enumerate(per_seed) for n in (0, 1)
             for split, sign in (("train", 1.0), ("heldout", 9.0))])
    return pd.DataFrame(runs), predictions


def test_attribution_table_on_a_hand_made_study_matches_brute_force_and_pairs_seeds():
    rng = np.random.default_rng(0)
    gaps = {}
    for z in F.CODES:
        cell = F.cell_of(z)
        sampled = registry.POLICIES[registry.CELLS[cell]].sampled
        gaps[cell] = list(rng.uniform(0.0, 0.3, size=3 if sampled else 1))
    gaps[F.cell_of((0, 0, 0))] = [1e-9]
    runs, predictions = _fake_study(gaps)
    cells = F.factorial_table(runs, predictions)
    parts = F.attribution_table(runs, predictions)
    assert list(cells.columns) == FACTORIAL_COLUMNS and list(parts.columns) == ATTRIBUTION_COLUMNS
    assert len(cells) == 8 and (cells["n_seeds"] == [1, 3, 1, 3, 1, 3, 1, 3]).all()  # CODES order: objective fastest
    per_seed = {z: np.array(gaps[F.cell_of(z)]) * np.ones(3) for z in F.CODES}      # deterministic: every seed
    means = {z: per_seed[z].mean() for z in F.CODES}
    shap = parts[parts["kind"] == "factor"].set_index("factor")
    np.testing.assert_allclose(shap.loc[list(F.FACTOR_NAMES), "shapley"], _brute_shapley(means), atol=1e-12)
    total = parts[parts["kind"] == "total"].iloc[0]
    assert total["effect"] == pytest.approx(means[(1, 1, 1)] - means[(0, 0, 0)])
    assert shap["shapley"].sum() == pytest.approx(total["effect"]) == pytest.approx(shap["chain"].sum())
    # paired: the interval of a part is the t interval of its per-seed values, not of the cells' own spreads
    brute_per_seed = np.array([_brute_shapley({z: per_seed[z][s] for z in F.CODES}) for s in range(3)])
    from grpo_amp.analysis.stats import seed_interval
    for i, name in enumerate(F.FACTOR_NAMES):
        np.testing.assert_allclose(shap.loc[name, ["shapley", "shapley_lo", "shapley_hi"]].to_numpy(float),
                                   seed_interval(brute_per_seed[:, i]), atol=1e-12)
    # bias has the gap's sign here (p_n above C3 everywhere); held-out rows never count
    assert (cells["bias"] > 0).all() and np.allclose(cells["bias"], cells["gap"])


def test_a_variant_without_all_eight_cells_is_left_out_and_disjoint_seeds_are_an_error():
    gaps = {F.cell_of(z): [0.1, 0.2] if registry.POLICIES[registry.CELLS[F.cell_of(z)]].sampled else [0.1]
            for z in F.CODES}
    partial = {c: g for c, g in gaps.items() if c != ("true_p", "steps", "one_group")}
    runs, predictions = _fake_study(partial)
    assert F.factorial_table(runs, predictions).empty and F.attribution_table(runs, predictions).empty
    runs, predictions = _fake_study(gaps)
    other_runs, other_pred = _fake_study({("true_p", "steps", "one_group"): [0.1, 0.2]}, seed0=10)
    runs = runs[runs["policy"] != "tabular_true_p_sgd"]
    predictions.update(other_pred)
    with pytest.raises(InputError, match="variant mean_std_ref share no seed"):
        F.attribution_table(pd.concat([runs, other_runs]), predictions)


# --------------------------------------------------------------------------- a fresh smoke run
@pytest.mark.slow
def test_smoke_run_writes_factorial_and_attribution_whose_parts_add_up(smoke_study):
    cells = pd.read_csv(smoke_study / "factorial.csv")
    parts = pd.read_csv(smoke_study / "attribution.csv")
    ladder = pd.read_csv(smoke_study / "ladder.csv")
    assert list(cells.columns) == FACTORIAL_COLUMNS and list(parts.columns) == ATTRIBUTION_COLUMNS
    assert set(cells["variant"]) == {"mean_std_ref"} and len(cells) == 8
    by_code = {tuple(registry.FACTORS[f].index(r[f]) for f in F.FACTOR_NAMES): r for _, r in cells.iterrows()}
    assert by_code[(0, 0, 0)]["gap"] < 1e-6                                          # R1 = C3
    r6 = ladder[(ladder["rung"] == "R6") & (ladder["run"] == "mean_std_ref")].iloc[0]
    assert by_code[(1, 1, 1)]["gap"] == pytest.approx(r6["gap"], abs=1e-12) and r6["gap"] > 0.02
    factors = parts[parts["kind"] == "factor"].set_index("factor")
    total = parts[parts["kind"] == "total"].iloc[0]
    assert total["effect"] == pytest.approx(by_code[(1, 1, 1)]["gap"] - by_code[(0, 0, 0)]["gap"], abs=1e-12)
    assert factors["shapley"].sum() == pytest.approx(total["effect"], abs=1e-12)
    assert factors["chain"].sum() == pytest.approx(total["effect"], abs=1e-12)
    # the chain parts are the ladder's R1 -> R2 -> R3 steps; the Shapley parts the brute-force order average
    r2 = ladder[(ladder["rung"] == "R2") & (ladder["run"] == "mean_std_ref")].iloc[0]
    assert factors.loc["advantage", "chain"] == pytest.approx(r2["part"], abs=1e-12)
    np.testing.assert_allclose(factors.loc[list(F.FACTOR_NAMES), "shapley"],
                               _brute_shapley({z: r["gap"] for z, r in by_code.items()}), atol=1e-12)
