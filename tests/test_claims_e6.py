"""E6's rows of the claims table (analysis.claims.e6) on constructed studies: each verdict must be able to fail."""

from __future__ import annotations

import numpy as np
import pandas as pd

from grpo_amp.analysis.claims.criteria import CRITERIA
from grpo_amp.analysis.claims.e6 import e6_order, e6_r2, permutation_share
from grpo_amp.analysis.claims.study import Study
from grpo_amp.analysis.claims.table import _rows
from grpo_amp.analysis.claims.theories import C3_G

ESTIMATORS = ["grpo", "dr_grpo", "rloo", "dapo", "verl"]


def _study(policy: str, finals_measured: dict, finals_predicted: dict, one_step_error: float = 0.0,
           seeds=(0, 1, 2), noise=0.0) -> Study:
    rng = np.random.default_rng(0)
    rows, preds = [], {}
    for name in finals_measured:
        run = "mean_std_ref" if name == "grpo" else f"mean_std_ref-est{name}"
        rows.append({"policy": policy, "run": run, "variant": "mean_std_ref",
                     "sweep": "variant" if name == "grpo" else "estimator", "kl": "ref", "norm": "mean_std",
                     "eps": 0.0, "std": "population", "beta": 1.0, "beta_prev": 0.0, "group_size": 8,
                     "estimator": name})
        frames = []
        for s in seeds:
            for n in range(3):
                pos = 0.2 + (finals_measured[name] - 0.2) * n / 2 + rng.normal(0, noise, 4)
                frames.append(pd.DataFrame({"question": range(4), "seed": s, "split": "train", "iteration": n,
                                            "pos": pos, "pred_one_step_G": pos + (one_step_error if n else 0.0),
                                            "pred_trajectory_G": 0.2 + (finals_predicted[name] - 0.2) * n / 2}))
        preds[(policy, run)] = pd.concat(frames, ignore_index=True)
    return Study(pd.DataFrame(rows), preds, {})


def claims_table(study: Study) -> pd.DataFrame:
    """The E6 rows alone (the table's own row builder; the other criteria need columns not made here)."""
    policy = study.runs["policy"].iloc[0]
    return pd.DataFrame([r for c in CRITERIA if c.claim.startswith("E6") and c.applies(policy)
                         for r in _rows(c, study, policy)])


def test_e6_rows_are_criteria():
    assert {c.claim for c in CRITERIA} >= {"E6", "E6b"}


def test_r2_meets_s_g_holds_and_fails():
    finals = dict.fromkeys(ESTIMATORS, 0.5)
    ok = e6_r2(_study("tabular_r2", finals, finals, one_step_error=3e-7, seeds=(0,)), "tabular_r2", C3_G)
    assert abs(ok.values[0] - 3e-7) < 1e-15 and "per estimator" in ok.evidence
    table = claims_table(_study("tabular_r2", finals, finals, one_step_error=3e-7, seeds=(0,)))
    row = table[table["claim"] == "E6"].iloc[0]
    assert row["verdict"] == "holds" and row["tolerance"] == 1e-6
    table = claims_table(_study("tabular_r2", finals, finals, one_step_error=2e-3, seeds=(0,)))
    assert table[table["claim"] == "E6"].iloc[0]["verdict"] == "fails"
    assert e6_r2(_study("tabular_sgd", finals, finals), "tabular_sgd", C3_G) is None  # R2 only


def test_practice_ordering_and_its_power():
    predicted = {"grpo": 0.62, "dr_grpo": 0.37, "rloo": 0.40, "dapo": 0.70, "verl": 0.59}
    same_order = {k: v + 0.05 for k, v in predicted.items()}
    m = e6_order(_study("tabular_sgd", same_order, predicted, noise=0.001), "tabular_sgd", C3_G)
    assert np.all(m.values > 0.8) and "share of shuffled orderings reaching rho: 0.00833" in m.evidence
    reversed_order = {k: 1.0 - x for k, x in predicted.items()}
    m = e6_order(_study("tabular_sgd", reversed_order, predicted, noise=0.001), "tabular_sgd", C3_G)
    assert np.all(m.values < -0.8)
    table = claims_table(_study("tabular_sgd", reversed_order, predicted, noise=0.001))
    assert table[table["claim"] == "E6b"].iloc[0]["verdict"] == "fails"
    # with three estimators a perfect ordering is reached by 1 shuffle in 6
    assert permutation_share([1, 2, 3], [1, 2, 3], 1.0) == 1 / 6


def test_no_estimator_runs_no_row():
    study = _study("tabular_sgd", {"grpo": 0.5}, {"grpo": 0.5})
    assert e6_order(study, "tabular_sgd", C3_G) is None


def _rescale_study(policy: str, made_with: dict, seeds=(0, 1, 2), noise=0.0) -> Study:
    """Each estimator run's PoS is the C3_G recurrence of the estimator ``made_with[name]`` (beta 1, G 8) from a
    shared p_ref: the truth of E6c is known by construction (``made_with`` = {name: name} is E6's world)."""
    from grpo_amp import estimators, theory

    rng = np.random.default_rng(1)
    p_ref = np.linspace(0.1, 0.7, 6)
    rows, preds = [], {}
    for name, maker in made_with.items():
        run = "mean_std_ref" if name == "grpo" else f"mean_std_ref-est{name}"
        rows.append({"policy": policy, "run": run, "variant": "mean_std_ref",
                     "sweep": "variant" if name == "grpo" else "estimator", "kl": "ref", "norm": "mean_std",
                     "eps": 0.0, "std": "population", "beta": 1.0, "beta_prev": 0.0, "group_size": 8,
                     "estimator": name})
        kw = estimators.resolve(maker).theory_kwargs()
        traj = theory.pos_recurrence(p_ref, 6, kl="ref", beta=1.0, group_size=8, **kw)  # (N+1, Q)
        frames = [pd.DataFrame({"question": range(len(p_ref)), "seed": s, "split": "train", "iteration": n,
                                "pos": np.clip(traj[n] + (rng.normal(0, noise, len(p_ref)) if n else 0.0), 1e-6, 1 - 1e-6),
                                "pred_one_step_G": traj[n], "pred_trajectory_G": traj[n]})  # E6/E6b's columns
                  for s in seeds for n in range(len(traj))]
        preds[(policy, run)] = pd.concat(frames, ignore_index=True)
    return Study(pd.DataFrame(rows), preds, {})


def test_e6c_the_exact_rescalings_hold_where_true_and_fail_where_not():
    """E6c on R2-like exact trajectories: each estimator made by its own recurrence gives the predicted ratios
    ((G-1)/G and sqrt(G/(G-1))) to the fit's precision and holds with power 1/1 (the wrong "no rescaling" is
    rejected); where RLOO's run was made by Dr. GRPO's advantage (no G/(G-1)), the row fails."""
    from grpo_amp.analysis.claims.e6 import e6_rescale

    names = ["grpo", "verl", "dr_grpo", "rloo"]
    true = _rescale_study("tabular_r2", {n: n for n in names}, seeds=(0,))
    m = e6_rescale(true, "tabular_r2", C3_G)
    assert m.values.max() < 1e-5 and "rloo/dr_grpo 0.875" in m.evidence
    row = claims_table(true).set_index("claim").loc["E6c"]
    assert row["verdict"] == "holds" and row["power"] == "1/1"
    wrong = _rescale_study("tabular_r2", {"grpo": "grpo", "verl": "verl", "dr_grpo": "dr_grpo", "rloo": "dr_grpo"},
                           seeds=(0,))
    assert e6_rescale(wrong, "tabular_r2", C3_G).values.max() > 0.1
    assert claims_table(wrong).set_index("claim").loc["E6c", "verdict"] == "fails"
    # practice: noisy seeds of the true world hold at 0.05 or are inconclusive, never fail
    noisy = _rescale_study("tabular_sgd", {n: n for n in names}, noise=0.002)
    assert claims_table(noisy).set_index("claim").loc["E6c", "verdict"] in ("holds", "inconclusive")
