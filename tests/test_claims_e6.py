"""E6's verdicts (analysis.claims_e6) on constructed studies: each verdict must be able to fail."""

from __future__ import annotations

import numpy as np
import pandas as pd

from grpo_amp.analysis.claims import CLAIMS, Study
from grpo_amp.analysis.claims_e6 import claim_e6

ESTIMATORS = ["grpo", "dr_grpo", "rloo", "dapo", "verl"]


def _study(policy: str, finals_measured: dict, finals_predicted: dict, one_step_error: float = 0.0,
           seeds=(0, 1, 2), noise=0.0) -> Study:
    rng = np.random.default_rng(0)
    rows, preds = [], {}
    for name in finals_measured:
        run = "mean_std_ref" if name == "grpo" else f"mean_std_ref-est{name}"
        rows.append({"policy": policy, "run": run, "variant": "mean_std_ref",
                     "sweep": "variant" if name == "grpo" else "estimator", "kl": "ref", "norm": "mean_std",
                     "eps": 0.0, "estimator": name, "shape_slope": 1.0, "shape_r2": 0.9})
        frames = []
        for s in seeds:
            for n in range(3):
                pos = finals_measured[name] * n / 2 + rng.normal(0, noise, 4)
                frames.append(pd.DataFrame({"question": range(4), "seed": s, "split": "train", "iteration": n,
                                            "pos": pos, "pred_one_step_G": pos + one_step_error,
                                            "pred_trajectory_G": finals_predicted[name] * n / 2}))
        preds[(policy, run)] = pd.concat(frames, ignore_index=True)
    return Study(pd.DataFrame(rows), preds, {})


def test_e6_is_in_the_claims_table():
    assert CLAIMS["E6"] is claim_e6


def test_r2_meets_s_g_holds_and_fails():
    finals = dict.fromkeys(ESTIMATORS, 0.5)
    ok = claim_e6(_study("tabular_r2", finals, finals, one_step_error=3e-7, seeds=(0,)), "tabular_r2")
    assert ok.verdict == "holds" and abs(ok.value - 3e-7) < 1e-15 and ok.tolerance == 1e-6
    bad = claim_e6(_study("tabular_r2", finals, finals, one_step_error=2e-3, seeds=(0,)), "tabular_r2")
    assert bad.verdict == "fails"


def test_practice_ordering_holds_only_with_power():
    predicted = {"grpo": 0.62, "dr_grpo": 0.37, "rloo": 0.40, "dapo": 0.70, "verl": 0.59}
    same_order = {k: v + 0.05 for k, v in predicted.items()}
    v = claim_e6(_study("tabular_sgd", same_order, predicted, noise=0.001), "tabular_sgd")
    assert v.verdict == "holds" and v.value > 0.9 and "share of orderings" in v.evidence
    reversed_order = {k: 1.0 - x for k, x in predicted.items()}
    assert claim_e6(_study("tabular_sgd", reversed_order, predicted, noise=0.001), "tabular_sgd").verdict == "fails"
    # three estimators: even a perfect ordering is reached by 1 in 6 shuffles: no power, inconclusive
    three = {k: predicted[k] for k in ("grpo", "dr_grpo", "dapo")}
    assert claim_e6(_study("tabular_sgd", three, three, noise=0.001), "tabular_sgd").verdict == "inconclusive"


def test_no_estimator_runs_no_verdict():
    study = _study("tabular_sgd", {"grpo": 0.5}, {"grpo": 0.5})
    assert claim_e6(study, "tabular_sgd") is None
