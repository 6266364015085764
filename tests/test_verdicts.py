"""The claims table's rules (issue 18): one criterion per row, each policy against its own prediction,
power against named wrong theories, signed gaps.

Studies are built as ``test_claims`` builds them (compare's own run_row and predict_frame over synthetic
measured PoS). ``verdict_by_hand`` (tests/helpers/claims.py) is the README's rule written out again here, on purpose apart from
``stats.row_verdict``: every row of every table must follow from its own columns by it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grpo_amp import theory
from grpo_amp.analysis.claims import claims_table
from grpo_amp.analysis.stats import row_verdict
from grpo_amp.schema import CLAIM_COLUMNS, VERDICTS
from helpers.claims import VARIANTS, Builder, _c3, _variant, verdict_by_hand

P = np.linspace(0.1, 0.9, 20)
BETAS = (0.5, 2.0, 4.0)


def assert_rows_follow_from_columns(table: pd.DataFrame) -> None:
    assert list(table.columns) == CLAIM_COLUMNS
    assert set(table["verdict"]) <= set(VERDICTS)
    assert set(table["criterion"].fillna("")) <= {"<=", ">=", ""}
    for _, row in table.iterrows():
        assert row["verdict"] == verdict_by_hand(row), row.to_dict()
        if row["criterion"] in ("<=", ">="):
            k, n = (int(x) for x in row["power"].split("/"))
            assert 0 <= k <= n and n >= 1, row.to_dict()


def _row(table, claim, policy):
    rows = table[(table["claim"] == claim) & (table["policy"] == policy)]
    assert len(rows) == 1, (claim, policy, sorted(table["claim"]))
    return rows.iloc[0]


def exact_builder(policy="tabular_exact", measure=None, betas=BETAS, beta_of_measure=None, group_size=8) -> Builder:
    """Every run measured exactly as ``measure(p_ref, variant, beta)`` (default: C3)."""
    measure = measure or (lambda p, v, beta=None: _c3(p, v, beta=beta))
    b = Builder(P)
    for name in VARIANTS:
        b.add(policy, name, VARIANTS[name], "variant", measure(P, VARIANTS[name]), group_size=group_size)
    for beta in betas:
        b.add(policy, f"mean_std_ref-beta{beta:g}", _variant("mean_std_ref", beta), "beta",
              measure(P, VARIANTS["mean_std_ref"], beta=(beta_of_measure or {}).get(beta, beta)), group_size=group_size)
    return b


@pytest.fixture(scope="module")
def exact_table() -> pd.DataFrame:
    return claims_table(exact_builder().study())


def test_row_verdict_on_a_hand_built_table():
    """Each outcome of the rule, on rows written by hand; the package's rule and the README's agree."""
    rows = pd.DataFrame([
        # criterion, lo, hi, tolerance, power, expected
        ("<=", 0.01, 0.03, 0.05, "3/6", "holds"),
        ("<=", 0.06, 0.09, 0.05, "6/6", "fails"),
        ("<=", 0.04, 0.06, 0.05, "6/6", "inconclusive"),
        ("<=", 0.01, 0.03, 0.05, "0/6", "no power"),       # would hold, rejects no wrong theory
        ("<=", 0.06, 0.09, 0.05, "0/6", "fails"),          # fails whatever its power
        (">=", 0.96, 0.99, 0.95, "1/7", "holds"),
        (">=", 0.90, 0.94, 0.95, "1/7", "fails"),
        (">=", 0.94, 0.97, 0.95, "0/1", "inconclusive"),
        (">=", 0.95, 0.95, 0.95, "1/1", "holds"),           # on the tolerance: inside
        ("<=", np.nan, np.nan, 0.05, "1/6", "inconclusive"),
        ("", -0.2, -0.1, np.nan, "", "measured"),
    ], columns=["criterion", "value_lo", "value_hi", "tolerance", "power", "expected"])
    for _, r in rows.iterrows():
        assert verdict_by_hand(r) == r["expected"], r.to_dict()
        assert row_verdict(r["value_lo"], r["value_hi"], r["tolerance"], r["criterion"], r["power"]) == r["expected"]


def test_exact_study_one_criterion_per_row_and_its_power(exact_table):
    table = exact_table
    assert_rows_follow_from_columns(table)
    v = dict(zip(table["claim"], table["verdict"]))
    # C2's value (KL inside the correct set) is 0 under every named theory: it cannot hold
    assert v["C2"] == "no power" and _row(table, "C2", "tabular_exact")["power"] == "0/6"
    for claim in ("C3", "C4b", "C5a", "C6a", "C6b", "C7a", "C7b", "E4"):
        assert v[claim] == "holds", (claim, _row(table, claim, "tabular_exact").to_dict())
    # C3 on exact data rejects every named wrong theory; C4a's sign only the no-amplification null
    assert _row(table, "C3", "tabular_exact")["power"] == "6/6"
    c4a = _row(table, "C4a", "tabular_exact")
    assert c4a["power"] == "1/7" and c4a["value"] == 1.0 and "rejects no amplification" in c4a["evidence"]
    # mirror -> 1 cannot tell beta x2 from beta (every beta goes to 1) but does reject kl=ref's limits
    c6a = _row(table, "C6a", "tabular_exact")
    assert "rejects other kl" in c6a["evidence"] and "beta x2" in c6a["evidence"].split("; not ")[1]
    # the population-limit closed form is judged by C3 alone: no _G rows
    assert not any(c.endswith("_G") for c in table["claim"])


def test_c7_curve_fails_on_data_from_another_beta_while_its_sign_holds():
    """Runs labelled beta = 0.5, 2, 4 measured at twice that beta: the order is right (C7a), the curve is not."""
    table = claims_table(exact_builder(beta_of_measure={b: 2 * b for b in BETAS}).study())
    assert_rows_follow_from_columns(table)
    assert _row(table, "C7a", "tabular_exact")["verdict"] == "holds"
    c7b = _row(table, "C7b", "tabular_exact")
    assert c7b["verdict"] == "fails" and c7b["value"] > 0.05
    # on these data the right theory fails the curve: a failing check is reported as failing, whatever its power
    assert c7b["power"].split("/")[1] == "6"


def test_r2_is_judged_by_c3_g_in_every_claim_and_passes():
    """R2 maximises the exact finite-G objective: measured = C3 with S_G, so C3_G, C4b_G, E4_G, E5 hold
    while the population C3 (not its prediction) is never its row."""
    def c3_g(p, v, beta=None):
        return theory.pos_recurrence(p, 12, kl=v.kl.value, beta=v.beta if beta is None else beta,
                                     beta_prev=v.beta_prev, norm=v.norm.value, eps=v.eps, std=v.std.value, group_size=8)
    table = claims_table(exact_builder("tabular_r2", measure=c3_g).study())
    assert_rows_follow_from_columns(table)
    claims = set(table["claim"])
    assert {"C3_G", "C4b_G", "E4_G", "E5"} <= claims and not {"C3", "C4b", "E4"} & claims
    for claim in ("C3_G", "C4b_G", "E4_G", "E5"):
        row = _row(table, claim, "tabular_r2")
        assert row["verdict"] == "holds", row.to_dict()
    e5 = _row(table, "E5", "tabular_r2")
    assert e5["value"] < 1e-12 and "rejects" in e5["evidence"] and "population weights" in e5["evidence"]


P_PRACTICE = np.linspace(0.4, 0.9, 20)


def _lowered(drift: float, offsets=(-0.005, 0.0, 0.005)) -> list[np.ndarray]:
    traj = _c3(P_PRACTICE, VARIANTS["mean_std_ref"])
    return [np.vstack([traj[:1], traj[1:] - drift - o]) for o in offsets]


def test_practice_gets_both_predictions_and_the_sign_of_its_gap():
    b = Builder(P_PRACTICE).add("tabular_sgd", "mean_std_ref", VARIANTS["mean_std_ref"], "variant", _lowered(0.2))
    for G in (4, 32):
        b.add("tabular_sgd", f"mean_std_ref-G{G}", VARIANTS["mean_std_ref"], "group_size", _lowered(0.1), group_size=G)
    study = b.study()
    table = claims_table(study)
    assert_rows_follow_from_columns(table)
    for claim in ("C3", "C3_G", "E2b", "E2b_G", "C4a", "C4a_G", "C4b", "C4b_G", "E4", "E4_G"):
        _row(table, claim, "tabular_sgd")
    e2b = _row(table, "E2b", "tabular_sgd")
    assert e2b["value"] == pytest.approx(-0.2, abs=1e-12) and e2b["value_hi"] < 0
    assert e2b["verdict"] == "holds" and e2b["power"] == "1/1"  # under-amplifies, with its interval below 0
    gap_g = study.runs.set_index("run").loc["mean_std_ref", "gap_trajectory_G"]
    assert _row(table, "C3_G", "tabular_sgd")["value"] == pytest.approx(gap_g, abs=1e-12)
    # E2a is a measurement: the gap from the smallest to the largest G, no verdict
    e2a = _row(table, "E2a", "tabular_sgd")
    assert e2a["verdict"] == "measured" and e2a["criterion"] == "" and e2a["power"] == ""
    assert e2a["value"] == pytest.approx(0.0, abs=1e-12)  # 0.1 at G = 4 and at G = 32
    # runs.csv carries the signed gap beside the absolute one
    run = study.runs.set_index("run").loc["mean_std_ref"]
    assert run["bias"] == pytest.approx(-0.2, abs=1e-12) and run["gap_trajectory"] == pytest.approx(0.2, abs=1e-12)
    assert run["bias_lo"] < run["bias"] < run["bias_hi"] < 0


def test_c1_states_the_smallest_weight_error_it_detects(exact_table):
    """Checks with SE 0.01 and noise of that size: a weight error d shows as RMS(d * closed form) / 0.01."""
    c1 = _row(exact_table, "C1", "tabular_exact")
    assert c1["verdict"] == "holds" and c1["power"] == "5/5"
    detected = float(c1["evidence"].split("smallest weight error it detects: ")[1].split("%")[0]) / 100
    assert 0.0 < detected <= 0.1
