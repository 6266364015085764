"""grpo_amp.analysis.claims on synthetic studies whose truth is known by construction.

Every study is built the way ``compare`` builds it: a pos table per run (POS_COLUMNS), turned into
the predict frame by ``predict.predict_frame``, turned into a runs.csv row (RUN_COLUMNS) by compare's
own ``run_row`` from the flattened config train writes, with a C1 frame (C1_COLUMNS) per plain-variant run. Only the measured
PoS (one array per seed), the C1 surrogate and the within-correct KL are synthetic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scipy import stats

from grpo_amp import registry, theory
from grpo_amp.analysis.claims import CRITERIA, TOLERANCE, Study, claims_markdown, claims_table
from grpo_amp.analysis.ladder import ladder_table
from grpo_amp.analysis.predict import predict_frame
from grpo_amp.analysis.stats import difference_interval, interval_verdict, noise_ratio, seed_interval
from grpo_amp.analysis.summaries import summarise_run

from grpo_amp.schema import CLAIM_COLUMNS
from helpers.claims import N_ITERS, SE, VARIANTS, _variant, _c3, _pos_table, Builder

def _verdicts(table: pd.DataFrame, policy: str) -> dict:
    rows = table[table["policy"] == policy]
    return dict(zip(rows["claim"], rows["verdict"]))


def _row(table, claim, policy):
    rows = table[(table["claim"] == claim) & (table["policy"] == policy)]
    assert len(rows) == 1, (claim, policy)
    return rows.iloc[0]


# --------------------------------------------------------------------------- the exact control
P_EXACT = np.linspace(0.1, 0.9, 20)


def exact_study(policy="tabular_exact", betas=(0.5, 2.0, 4.0), beta_of_measure=None, c1="noise") -> Builder:
    """Measured = C3 exactly for every run (tabular_exact-like); ``beta_of_measure`` re-labels the beta sweep."""
    b = Builder(P_EXACT)
    for name in VARIANTS:
        b.add(policy, name, VARIANTS[name], "variant", _c3(P_EXACT, VARIANTS[name]), c1=c1)
    for beta in betas:
        measured_beta = beta if beta_of_measure is None else beta_of_measure[beta]
        b.add(policy, f"mean_std_ref-beta{beta:g}", _variant("mean_std_ref", beta), "beta",
              _c3(P_EXACT, VARIANTS["mean_std_ref"], beta=measured_beta))
    return b


def test_exact_study_every_claim_holds():
    table = claims_table(exact_study().study())
    assert list(table.columns) == CLAIM_COLUMNS
    # E1 needs sampled groups (tabular_exact draws none), E5 an E5 rung; C2's KL is 0 under every named
    # theory (each tilts by r alone): it rejects none of them, so it cannot hold
    assert _verdicts(table, "tabular_exact") == {**{c: "holds" for c in ("C1", "C3", "C4a", "C4b", "C5a", "C5b", "C6a",
                                                                         "C6b", "C7a", "C7b", "E4")}, "C2": "no power"}
    assert _row(table, "C3", "tabular_exact")["value"] < 1e-12
    assert _row(table, "C2", "tabular_exact")["value"] == 0.0
    # the evidence says how many outputs the KL compared: the helper's train question i has 1 + i % 4 correct ones
    n_train = len(P_EXACT)
    counts = "/".join(str(len(range(k - 1, n_train, 4))) for k in range(1, 5))
    assert f"correct sets of 1/2/3/4 outputs: {counts} train questions" in _row(table, "C2", "tabular_exact")["evidence"]
    assert _row(table, "C4a", "tabular_exact")["value"] == 1.0  # every question amplified
    assert _row(table, "C5a", "tabular_exact")["value"] < 1e-12  # mean_only: p_n = p_1 for n >= 1
    assert _row(table, "C7a", "tabular_exact")["value"] == pytest.approx(-1.0)  # finals strictly decrease in beta
    assert _row(table, "E4", "tabular_exact")["value"] <= TOLERANCE["fit_rmse"][registry.ROUNDOFF]
    c1 = _row(table, "C1", "tabular_exact")
    assert 0.8 < c1["value"] < 1.2 and c1["tolerance"] == 1.5  # noise of the stated SE: ratio ~1


def test_c1_bias_of_five_se_fails():
    table = claims_table(exact_study(c1="bias").study())
    v = _verdicts(table, "tabular_exact")
    assert v["C1"] == "fails" and "E1a" not in v
    assert _row(table, "C1", "tabular_exact")["value"] == pytest.approx(5.0, rel=1e-9)  # RMS(5 SE) / SE
    assert all(v[c] == "holds" for c in ("C3", "C4a", "C4b", "C5a", "C6a", "C7a", "C7b", "E4"))


def test_c7_fails_when_finals_increase_with_beta():
    relabel = {0.5: 8.0, 2.0: 0.9, 4.0: 0.8}  # the run called beta=4 behaves like beta=0.8, ...
    table = claims_table(exact_study(betas=(0.5, 2.0, 4.0), beta_of_measure=relabel).study())
    c7 = _row(table, "C7a", "tabular_exact")
    assert c7["verdict"] == "fails" and c7["value"] > 0
    assert _row(table, "C7b", "tabular_exact")["verdict"] == "fails"  # and the curve is off
    finals = {b: float(_c3(P_EXACT, VARIANTS["mean_std_ref"], beta=relabel.get(b, 1.0))[-1].mean())
              for b in (0.5, 1.0, 2.0, 4.0)}
    assert finals[0.5] < finals[1.0] < finals[2.0] < finals[4.0]  # the construction: increasing in beta
    assert c7["value"] == pytest.approx(1.0)
    assert _row(table, "C3", "tabular_exact")["verdict"] == "holds"  # the plain runs are still exact


def test_c7_sign_holds_on_one_increase_but_the_curve_fails():
    """Finals 0.968, 0.915, 0.943, 0.610 for beta 0.5, 1, 2, 4: rho = 1 - 6*18/60 = -0.8 (the sign, C7a,
    holds), but the finals at beta 0.5 and 2 are those of beta 0.8 and 0.9: C7b, the curve, fails."""
    table = claims_table(exact_study(beta_of_measure={0.5: 0.8, 2.0: 0.9, 4.0: 4.0}).study())
    c7a, c7b = _row(table, "C7a", "tabular_exact"), _row(table, "C7b", "tabular_exact")
    assert c7a["verdict"] == "holds" and c7a["value"] == pytest.approx(-0.8) and c7a["power"] == "1/1"
    finals = {b: float(_c3(P_EXACT, VARIANTS["mean_std_ref"], beta=m)[-1].mean()) for b, m in ((0.5, 0.8), (2.0, 0.9))}
    limits = {b: float(theory.predicted_limit(P_EXACT, b).mean()) for b in (0.5, 2.0)}
    assert c7b["verdict"] == "fails"
    assert c7b["value"] == pytest.approx(max(abs(finals[b] - limits[b]) for b in (0.5, 2.0)), rel=1e-9)


def test_c7_needs_three_betas():
    table = claims_table(exact_study(betas=(0.5,)).study())
    assert not {"C7a", "C7b"} & set(table["claim"])


# --------------------------------------------------------------------------- practice
P_PRACTICE = np.linspace(0.4, 0.9, 20)


SPREAD = (-0.005, 0.0, 0.005)  # per-seed drift around the stated one: seeds with a small spread, same mean


def _drifted(drift: float, spread=SPREAD) -> list[np.ndarray]:
    """One (N+1, Q) array per seed: C3 lowered by drift + that seed's offset for n >= 1."""
    traj = _c3(P_PRACTICE, VARIANTS["mean_std_ref"])
    seeds = []
    for offset in spread:
        out = traj.copy()
        out[1:] -= drift + offset
        assert out.min() >= 0
        seeds.append(out)
    return seeds


def test_c2_is_judged_on_the_signed_task_too_and_says_what_each_run_compared():
    """A transformer whose plain run (2-point correct sets) drifts by 0.005 nats and whose -sign1 run (4 spellings)
    by 0.05: C2 takes the signed run, fails, and its evidence gives each run's correct-set sizes."""
    b = Builder(P_EXACT)
    v = VARIANTS["mean_std_ref"]
    seeds = [_c3(P_EXACT, v)] * 3
    b.add("transformer", "mean_std_ref", v, "variant", seeds, kl_in_correct=0.005, n_correct=2)
    b.add("transformer", "mean_std_ref-sign1", v, "plus_sign", seeds, kl_in_correct=0.05, n_correct=4)
    row = _row(claims_table(b.study()), "C2", "transformer")
    assert row["value"] == pytest.approx(0.05) and row["verdict"] == "fails"
    n = len(P_EXACT)
    assert (f"worst mean_std_ref-sign1; mean_std_ref: 0.005 (sets of 2 outputs: {n} train questions), "
            f"mean_std_ref-sign1: 0.05 (sets of 4 outputs: {n} train questions)") in row["evidence"]


def practice_study(g_gaps: dict, m_gaps: dict, kl_in_correct=0.0, policy="tabular_sgd") -> Study:
    b = Builder(P_PRACTICE)
    # C1's SE at half the exact study's: at p_ref in [0.4, 0.9] and G = 8 the finite-G and population
    # weights differ little, so E1 needs the finer checks to tell them apart
    b.add(policy, "mean_std_ref", VARIANTS["mean_std_ref"], "variant", _drifted(0.2), group_size=8, inner_steps=12,
          kl_in_correct=kl_in_correct, c1_se=SE / 2)
    for G, gap in g_gaps.items():
        b.add(policy, f"mean_std_ref-G{G}", VARIANTS["mean_std_ref"], "group_size", _drifted(gap), group_size=G)
    for M, gap in m_gaps.items():
        b.add(policy, f"mean_std_ref-M{M}", VARIANTS["mean_std_ref"], "inner_steps", _drifted(gap), inner_steps=M)
    return b.study()


def test_practice_drift_of_0_2_fails_c3_and_e2_holds_when_gaps_shrink():
    study = practice_study({4: 0.3, 32: 0.1}, {1: 0.35, 32: 0.05}, kl_in_correct=0.005)
    table = claims_table(study)
    # E5 (R6): the gap falls monotonically in M (0.35, 0.2, 0.05): the interior M is no minimum, no U-shape
    v = _verdicts(table, "tabular_sgd")
    assert {c: v[c] for c in ("C1", "C2", "C3", "C3_G", "C4b", "E1a", "E1b", "E2a", "E2b", "E4", "E5a", "E5b")} == {
        "C1": "holds", "C2": "no power", "C3": "fails", "C3_G": "fails", "C4b": "fails", "E1a": "holds",
        "E1b": "holds", "E2a": "measured", "E2b": "holds", "E4": "fails", "E5a": "holds", "E5b": "fails"}
    c3 = _row(table, "C3", "tabular_sgd")
    assert c3["value"] == pytest.approx(0.2, abs=1e-12) and c3["tolerance"] == 0.05
    assert _row(table, "C2", "tabular_sgd")["value"] == pytest.approx(0.005)
    assert _row(table, "C4a", "tabular_sgd")["value"] < 0.95  # p_N = C3 - 0.2 falls below p_ref for easy questions
    assert _row(table, "E2b", "tabular_sgd")["value"] == pytest.approx(-0.2, abs=1e-12)  # under-amplifies
    e2 = _row(table, "E2a", "tabular_sgd")
    assert e2["value"] == pytest.approx(-0.2, abs=1e-12)  # the gap from G = 4 (0.3) to G = 32 (0.1)
    # its Welch interval over 3 seeds (offsets -0.005, 0, 0.005 in both runs): by hand
    half = stats.t.ppf(0.975, 2) * np.sqrt(2 * 0.005 ** 2 / 3)
    assert [e2["value_lo"], e2["value_hi"]] == pytest.approx([-0.2 - half, -0.2 + half], abs=1e-12)
    assert _row(table, "C3", "tabular_sgd")["n_seeds"] == 3
    assert _row(table, "E4", "tabular_sgd")["value"] > 2 * TOLERANCE["fit_rmse"][registry.PRACTICE]  # no beta explains it
    runs = study.runs.set_index("run")
    assert runs.loc["mean_std_ref-G4", "gap_trajectory"] == pytest.approx(0.3, abs=1e-12)
    assert runs.loc["mean_std_ref-M32", "gap_trajectory"] == pytest.approx(0.05, abs=1e-12)


def test_practice_e2_is_measured_when_gaps_grow_with_group_size():
    table = claims_table(practice_study({4: 0.1, 32: 0.3}, {1: 0.35, 32: 0.05}, kl_in_correct=0.02))
    v = _verdicts(table, "tabular_sgd")
    assert v["E2a"] == "measured" and v["C3"] == "fails" and v["C2"] == "fails"
    assert _row(table, "E2a", "tabular_sgd")["value"] == pytest.approx(0.2, abs=1e-12)
    assert _row(table, "C2", "tabular_sgd")["value"] == pytest.approx(0.02)


def test_practice_matching_c3_holds_within_tolerance():
    """Practice gets its stated allowance: a drift of 0.03 < 0.05 passes C3 for tabular_sgd, not for the exact control."""
    for policy, verdict in (("tabular_sgd", "holds"), ("tabular_exact", "fails")):
        b = Builder(P_PRACTICE).add(policy, "mean_std_ref", VARIANTS["mean_std_ref"], "variant", _drifted(0.03))
        c3 = _row(claims_table(b.study()), "C3", policy)
        assert c3["verdict"] == verdict and c3["value"] == pytest.approx(0.03, abs=1e-12)


def test_e3_heldout_gain_for_the_transformer():
    """E3: the held-out gain per seed (paired t in the evidence); +-0.05 holds / fails, no change cannot hold (no power)."""
    rng = np.random.default_rng(0)
    held0 = rng.uniform(0.2, 0.6, 30)
    results = {}
    for sign in (+1, -1, 0):
        noise = rng.normal(0, 0.01, held0.size) if sign else 0.0
        heldout = np.vstack([held0, held0 + sign * 0.02, held0 + sign * 0.05 + noise])
        b = Builder(P_EXACT).add("transformer", "mean_std_ref", VARIANTS["mean_std_ref"], "variant",
                                 _c3(P_EXACT, VARIANTS["mean_std_ref"], n_iters=2), heldout=heldout)
        table = claims_table(b.study())
        results[sign] = _row(table, "E3", "transformer")
        assert "E3" not in set(table.loc[table["policy"] != "transformer", "claim"])
    assert results[+1]["verdict"] == "holds" and results[+1]["value"] == pytest.approx(0.05, abs=0.01)
    assert results[-1]["verdict"] == "fails" and results[-1]["value"] == pytest.approx(-0.05, abs=0.01)
    assert results[0]["verdict"] == "no power" and results[0]["value"] == 0.0 and results[0]["power"] == "0/1"


def test_e3_effect_is_the_gain_minus_each_controls():
    """E3 with its controls (issue 20): the held-out gain minus the shuffled-rewards run's gain and minus the
    tempered pi_ref's gain, each in the evidence with its value; the control run gets no claim row of its own."""
    rng = np.random.default_rng(0)
    held0 = rng.uniform(0.2, 0.6, 30)
    gained = np.vstack([held0, held0 + 0.02, held0 + 0.05 + rng.normal(0, 0.01, held0.size)])
    gain = float(gained[-1].mean() - held0.mean())
    v, c3 = VARIANTS["mean_std_ref"], _c3(P_EXACT, VARIANTS["mean_std_ref"], n_iters=2)
    b = Builder(P_EXACT).add("transformer", "mean_std_ref", v, "variant", c3, heldout=gained)
    b.add("transformer_shuffled", "mean_std_ref", v, "variant", c3, heldout=np.vstack([held0] * 2 + [held0 + 0.01]))
    study = b.study()
    study.e3[("transformer", "mean_std_ref")] = pd.DataFrame(
        {"seed": [0], "temperature": [0.8], "heldout_p_ref": [0.4], "heldout_p_tempered": [0.43]})
    table = claims_table(study)
    assert "transformer_shuffled" not in set(table["policy"])
    evidence = _row(table, "E3", "transformer")["evidence"]
    assert f"effect minus transformer_shuffled's gain: {gain - 0.01:.3g}" in evidence
    assert f"(T = 0.8, matched to the train entropy drop): {gain - 0.03:.3g}" in evidence
    assert f"(p_ref {held0.mean():.3g})" in evidence


# --------------------------------------------------------------------------- summaries and rendering
def test_summarise_run_recovers_beta_eff():
    v = _variant("mean_std_ref", beta=0.7)
    measured = _c3(P_EXACT, v)
    held = np.vstack([np.full(3, 0.3 + 0.01 * n) for n in range(N_ITERS + 1)])  # held-out PoS rises 0.01 per step
    pred = predict_frame(_pos_table(measured, held), v, 8)
    settings = {"kl": "ref", "norm": "mean_std", "eps": 0.0, "beta_prev": 0.0, "std": "population"}
    s = summarise_run(pred, settings)
    assert s["beta_eff"] == pytest.approx(0.7, rel=1e-6) and s["beta_eff_rmse"] < 1e-8
    assert s["final_pos_mean"] == pytest.approx(measured[-1].mean(), rel=1e-12)
    assert s["pred_final_mean"] == pytest.approx(measured[-1].mean(), rel=1e-12)
    assert s["gap_trajectory"] < 1e-12 and s["gap_one_step"] < 1e-12
    assert s["gap_trajectory_G"] > 0.01  # E1's finite-G C3 differs from the population one at G = 8
    assert s["heldout_gain"] == pytest.approx(0.01 * N_ITERS, rel=1e-9)
    # a mean_only trajectory with its own beta
    v2 = _variant("mean_only_ref", beta=2.5)
    s2 = summarise_run(predict_frame(_pos_table(_c3(P_EXACT, v2), held), v2, 8),
                       {**settings, "norm": "mean_only"})
    assert s2["beta_eff"] == pytest.approx(2.5, rel=1e-6)


def test_noise_ratio_by_hand():
    assert noise_ratio(np.array([1.0, 2.0]), np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(
        np.sqrt(2.0))  # RMS(0, 2) / RMS(1, 1)
    assert noise_ratio(np.array([1.0, np.nan]), np.array([0.5, 0.0]), np.array([0.25, 0.1])) == pytest.approx(2.0)
    assert noise_ratio(np.zeros(3), np.zeros(3), np.zeros(3)) == 0.0
    assert noise_ratio(np.ones(3), np.zeros(3), np.zeros(3)) == np.inf


def test_claims_markdown_renders_every_row():
    b = exact_study()
    study = b.study()
    practice = practice_study({4: 0.3, 32: 0.1}, {1: 0.35, 32: 0.05})
    both = Study(pd.concat([study.runs, practice.runs], ignore_index=True), {**study.predictions,
                 **practice.predictions}, {**study.c1, **practice.c1})
    table = claims_table(both)
    assert set(table["policy"]) == {"tabular_exact", "tabular_sgd"}
    assert set(table["verdict"]) <= {"holds", "fails", "inconclusive", "no power", "measured"}
    md = claims_markdown(table, "smoke")
    assert md.startswith("# Claims at scale `smoke`")
    lines = md.splitlines()
    for r in table.itertuples():
        hits = [ln for ln in lines if ln.startswith(f"| {r.claim} | {r.policy} | **{r.verdict}** |")]
        assert len(hits) == 1, (r.claim, r.policy)
        shown = f"{r.value:.3g}" if r.value_lo == r.value_hi else f"{r.value:.3g} [{r.value_lo:.3g}, {r.value_hi:.3g}]"
        tol = "-" if np.isnan(r.tolerance) else f"{r.tolerance:.3g}"
        assert f"| {shown} | {r.criterion or '-'} | {tol} | {r.power or '-'} | {r.n_seeds} |" in hits[0]
    first = lines.index(next(ln for ln in lines if ln.startswith("| claim | ")))
    end = lines.index("", first)  # the verdict matrix runs from its header to the blank line
    header, body = lines[first], lines[first + 2:end]
    matrix = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]] for ln in body}
    ids = {c.claim for c in CRITERIA}
    assert set(matrix) == set(table["claim"]) and set(matrix) <= ids | {f"{c}_G" for c in ids}
    policies = [c.strip() for c in header.split("|")[2:-1]]
    for claim, cells in matrix.items():
        for policy, cell in zip(policies, cells):
            rows = table[(table["claim"] == claim) & (table["policy"] == policy)]
            assert cell == (rows["verdict"].iloc[0] if len(rows) else "-")
    assert matrix["E2a"][policies.index("tabular_exact")] == "-"  # the exact control has no E2


# --------------------------------------------------------------------------- the interval rule by hand
def test_interval_verdict_on_hand_made_numbers():
    assert interval_verdict(0.01, 0.04, 0.05) == "holds"          # wholly inside (below)
    assert interval_verdict(0.06, 0.2, 0.05) == "fails"           # wholly outside
    assert interval_verdict(0.03, 0.07, 0.05) == "inconclusive"   # straddles
    assert interval_verdict(0.05, 0.05, 0.05) == "holds"          # on the threshold counts as inside
    assert interval_verdict(0.96, 0.99, 0.95, holds_below=False) == "holds"
    assert interval_verdict(0.5, 0.9, 0.95, holds_below=False) == "fails"
    assert interval_verdict(0.9, 0.97, 0.95, holds_below=False) == "inconclusive"
    for lo, hi in ((np.nan, 0.01), (0.0, np.nan), (-np.inf, 0.0)):
        assert interval_verdict(lo, hi, 0.05) == "inconclusive"
        assert interval_verdict(lo, hi, 0.05, holds_below=False) == "inconclusive"


def test_seed_interval_against_a_t_interval_by_hand():
    x = np.array([0.21, 0.19, 0.24, 0.20])
    mean = 0.21
    sd = np.sqrt(((x - mean) ** 2).sum() / 3)
    half = stats.t.ppf(0.975, 3) * sd / 2
    assert seed_interval(x) == pytest.approx((mean, mean - half, mean + half), rel=1e-12)
    assert seed_interval([0.3]) == (0.3, 0.3, 0.3)                 # one seed: the point
    assert seed_interval([0.3, np.nan]) == (0.3, 0.3, 0.3)         # a NaN seed is left out
    assert all(np.isnan(seed_interval([np.nan])))


def test_difference_interval_against_welch_by_hand():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0, 8.0])
    var = 1.0 / 3 + (20.0 / 3) / 4                                  # var(a)/3 + var(b)/4, ddof=1
    half = stats.t.ppf(0.975, 2) * np.sqrt(var)                     # conservative dof: min(3, 4) - 1
    assert difference_interval(a, b) == pytest.approx((3.0, 3.0 - half, 3.0 + half), rel=1e-12)
    assert difference_interval([0.2], [0.5]) == pytest.approx((0.3, 0.3, 0.3))  # one seed each: a point
    assert difference_interval([0.2, 0.2], [0.5, 0.5]) == pytest.approx((0.3, 0.3, 0.3))  # no spread


# --------------------------------------------------------------------------- E1
def test_e1_holds_only_when_population_weights_are_rejected():
    """C1 frame at E1's finite-G closed form: with a small SE the population weights are rejected (E1a and
    E1b hold); with an SE so large that both weights fit, E1a cannot hold (no power: it rejects no wrong
    weights) and E1b fails; with E1's weights themselves off, E1a fails."""
    v = VARIANTS["mean_std_ref"]
    results = {}
    for se in (SE / 10, 1.0):
        b = Builder(P_EXACT).add("tabular_sgd", "mean_std_ref", v, "variant", _c3(P_EXACT, v), group_size=4,
                                 c1_se=se)
        table = claims_table(b.study())
        results[se] = [_row(table, c, "tabular_sgd") for c in ("C1", "E1a", "E1b")]
    c1, e1a, e1b = results[SE / 10]
    assert c1["verdict"] == "holds" and e1a["verdict"] == "holds" and e1b["verdict"] == "holds"
    assert e1b["value"] > 1.5 and e1a["power"] == "1/1" and e1b["power"] == "1/1"
    assert e1a["value"] == pytest.approx(c1["value"]) and 0.8 < e1a["value"] < 1.2
    c1, e1a, e1b = results[1.0]
    assert c1["verdict"] == "no power" and e1a["verdict"] == "no power" and e1b["verdict"] == "fails"
    assert e1b["value"] <= 1.5
    biased = Builder(P_EXACT).add("tabular_sgd", "mean_std_ref", v, "variant", _c3(P_EXACT, v), group_size=4,
                                  c1="bias")  # the surrogate 5 SE off E1's closed form
    assert _row(claims_table(biased.study()), "E1a", "tabular_sgd")["verdict"] == "fails"
    # the exact control draws no groups: no E1
    assert not {"E1a", "E1b"} & set(claims_table(exact_study().study())["claim"])


# --------------------------------------------------------------------------- E5 ladder
def test_ladder_main_chain_telescopes():
    """R1 -> R2 -> R3 -> R4 (m = 4, the largest) -> R6: each part is gap - parent's gap, and the parts
    after the root add up to gap(R6) - gap(R1); R4's m = 1 run (R6 draw for draw) is not R6's parent."""
    v = VARIANTS["mean_std_ref"]
    b = Builder(P_PRACTICE)
    drift = {"tabular_r1": 0.0, "tabular_r2": 0.02, "tabular_r3": 0.05, "tabular_sgd": 0.15}
    for policy, d in drift.items():
        measured = _drifted(d) if registry.policy(policy).sampled else _drifted(d, spread=(0.0,))[0]
        b.add(policy, "mean_std_ref", v, "variant", measured, c1=None)
    b.add("tabular_r4", "mean_std_ref", v, "variant", _drifted(0.12), c1=None)  # m = 1
    b.add("tabular_r4", "mean_std_ref-m2", v, "groups_per_question", _drifted(0.1), c1=None, groups_per_question=2)
    b.add("tabular_r4", "mean_std_ref-m4", v, "groups_per_question", _drifted(0.08), c1=None, groups_per_question=4)
    study = b.study()
    ladder = ladder_table(study.runs, study.predictions).set_index("rung")
    assert ladder.loc["R1", "parent"] == "" and ladder.loc["R1", "gap"] < 1e-12
    assert ladder.loc["R2", "parent"] == "R1" and ladder.loc["R3", "parent"] == "R2"
    assert ladder.loc["R4 (m = 4)", "parent"] == "R3" and ladder.loc["R6", "parent"] == "R4 (m = 4)"
    for rung, gap in (("R2", 0.02), ("R3", 0.05), ("R4 (m = 4)", 0.08), ("R6", 0.15)):
        assert ladder.loc[rung, "gap"] == pytest.approx(gap, abs=1e-12)
        assert ladder.loc[rung, "part"] == pytest.approx(gap - ladder.loc[ladder.loc[rung, "parent"], "gap"],
                                                         abs=1e-12)
    chain = ["R2", "R3", "R4 (m = 4)", "R6"]
    assert ladder.loc[chain, "part"].sum() == pytest.approx(ladder.loc["R6", "gap"] - ladder.loc["R1", "gap"],
                                                             abs=1e-12)
    assert ladder.loc["R6", "n_seeds"] == 3 and ladder.loc["R6", "gap_lo"] < 0.15 < ladder.loc["R6", "gap_hi"]
    # the signed gap beside the absolute one: every rung sits below C3 here (under-amplifies)
    assert ladder.loc["R6", "bias"] == pytest.approx(-0.15, abs=1e-12) and ladder.loc["R6", "bias_hi"] < 0
    assert ladder.loc["R6", "bias_lo"] < -0.15 < ladder.loc["R6", "bias_hi"]
    # R6 vs R4 (m = 4), 3 seeds each with the same offsets: Welch interval by hand
    half = stats.t.ppf(0.975, 2) * np.sqrt(2 * 0.005 ** 2 / 3)
    assert ladder.loc["R6", ["part_lo", "part_hi"]].tolist() == pytest.approx([0.07 - half, 0.07 + half], abs=1e-12)


def _transformer_ladder(with_r1: bool = True, with_r2: bool = True, with_control: bool = True,
                        control_g: int = 8, twin: bool = False) -> pd.DataFrame:
    """The table's R2, R4 (m = 4), R6 and the transformer family: r1, r2, control (m = 4), transformer, trl."""
    v = VARIANTS["mean_std_ref"]
    b = Builder(P_PRACTICE)
    b.add("tabular_r2", "mean_std_ref", v, "variant", _drifted(0.02, spread=(0.0,))[0], c1=None)
    b.add("tabular_sgd", "mean_std_ref", v, "variant", _drifted(0.15), c1=None)
    b.add("tabular_r4", "mean_std_ref-m4", v, "groups_per_question", _drifted(0.08), c1=None, groups_per_question=4)
    if with_r1:
        b.add("transformer_r1", "mean_std_ref", v, "variant", _drifted(0.04, spread=(0.0,))[0], c1=None)
    if with_r2:
        b.add("transformer_r2", "mean_std_ref", v, "variant", _drifted(0.05, spread=(0.0,))[0], c1=None)
    if with_control:
        b.add("transformer_control", "mean_std_ref", v, "variant", _drifted(0.11), c1=None, inner_steps=4,
              groups_per_question=4, group_size=control_g)
    b.add("transformer", "mean_std_ref", v, "variant", _drifted(0.17), c1=None, inner_steps=4)
    b.add("trl", "mean_std_ref", v, "variant", _drifted(0.16), c1=None, inner_steps=4)
    if twin:  # the table's rungs on the transformer's questions
        b.add("twin_r1", "mean_std_ref", v, "variant", _drifted(0.0, spread=(0.0,))[0], c1=None)
        b.add("twin_r2", "mean_std_ref", v, "variant", _drifted(0.01, spread=(0.0,))[0], c1=None)
        b.add("twin_r4", "mean_std_ref-m4", v, "groups_per_question", _drifted(0.07), c1=None, groups_per_question=4)
        b.add("twin_sgd", "mean_std_ref", v, "variant", _drifted(0.12), c1=None)
    study = b.study()
    return ladder_table(study.runs, study.predictions).set_index("rung")


def test_ladder_transformer_chain_stays_on_its_own_questions():
    """transformer r1 (root) -> r2 -> control -> transformer / trl, every part the difference of two gaps on
    the modarith questions: no transformer row hangs off a table row (another question set), and the
    parts from r1 down telescope to the transformer's gap minus r1's."""
    ladder = _transformer_ladder()
    assert (ladder.loc[["R2", "R4 (m = 4)", "R6"], "questions"] == "tabular").all()
    family = ["transformer r1", "transformer r2", "transformer control", "transformer", "trl"]
    assert (ladder.loc[family, "questions"] == "modarith").all()
    assert ladder.loc["transformer r1", "parent"] == "" and ladder.loc["transformer r2", "parent"] == "transformer r1"
    assert ladder.loc["transformer control", "parent"] == "transformer r2"
    assert ladder.loc["transformer", "parent"] == "transformer control" == ladder.loc["trl", "parent"]
    r1, control, transformer = ladder.loc["transformer r1"], ladder.loc["transformer control"], ladder.loc["transformer"]
    assert r1["part"] == pytest.approx(0.04, abs=1e-12) == r1["gap"]  # the root's part is its gap: parametrisation
    assert control["part"] == pytest.approx(0.11 - 0.05, abs=1e-12)
    assert transformer["part"] == pytest.approx(0.06, abs=1e-12)
    chain = ["transformer r2", "transformer control", "transformer"]
    assert ladder.loc[chain, "part"].sum() == pytest.approx(transformer["gap"] - r1["gap"], abs=1e-12)
    half = stats.t.ppf(0.975, 2) * np.sqrt(2 * 0.005 ** 2 / 3)  # 3 seeds each with the same offsets
    assert [transformer["part_lo"], transformer["part_hi"]] == pytest.approx([0.06 - half, 0.06 + half], abs=1e-12)
    assert r1["cause"].startswith("parametrisation, nothing else")
    assert control["cause"].startswith("sampling") and "exact finite-G objective" in control["cause"]
    assert transformer["cause"].startswith("sampling + optimisation on the transformer")
    assert "TRL" in ladder.loc["trl", "cause"]


def test_ladder_twin_chain_and_what_the_shared_parameters_add():
    """The twin's rungs form the table's chain on the twin's questions (R1 -> R2 -> R4 (m = 4) -> R6, no R3
    there), never hanging off the drawn table's rows; each transformer row carries gap minus its twin
    counterpart's (r1 - R1, r2 - R2, control - R4 at its m, transformer and trl - R6), Welch over seeds."""
    ladder = _transformer_ladder(twin=True)
    twin = ["twin R1", "twin R2", "twin R4 (m = 4)", "twin R6"]
    assert (ladder.loc[twin, "questions"] == "twin").all()
    assert ladder.loc["twin R1", "parent"] == "" and ladder.loc["twin R2", "parent"] == "twin R1"
    assert ladder.loc["twin R4 (m = 4)", "parent"] == "twin R2" and ladder.loc["twin R6", "parent"] == "twin R4 (m = 4)"
    assert ladder.loc["R6", "parent"] == "R4 (m = 4)" and ladder.loc["R2", "parent"] == ""  # the drawn table's own
    assert ladder.loc["twin R6", "part"] == pytest.approx(0.12 - 0.07, abs=1e-12)
    expected = {"transformer r1": ("twin R1", 0.04), "transformer r2": ("twin R2", 0.04),
                "transformer control": ("twin R4 (m = 4)", 0.04), "transformer": ("twin R6", 0.05),
                "trl": ("twin R6", 0.04)}
    for rung, (counterpart, diff) in expected.items():
        assert ladder.loc[rung, "twin"] == counterpart
        assert ladder.loc[rung, "vs_twin"] == pytest.approx(diff, abs=1e-12), rung
    half = stats.t.ppf(0.975, 2) * np.sqrt(2 * 0.005 ** 2 / 3)  # 3 seeds each with the same offsets
    assert ladder.loc["transformer", ["vs_twin_lo", "vs_twin_hi"]].tolist() == pytest.approx([0.05 - half, 0.05 + half])
    assert ladder.loc[twin + ["R6"], "vs_twin"].isna().all()  # only transformer rows have a twin
    assert ladder.loc["transformer", "twin"] != "" and _transformer_ladder().loc["transformer", "twin"] == ""


def test_ladder_transformer_rows_fall_back_within_their_questions_or_are_roots():
    """Without r2 the control hangs off r1; a control at another G than r2's skips r2 (no part across
    group sizes); with no exact rung the control is a root (never the table's R4); without a control
    the transformer hangs off r2; with none of them it is a root with its whole gap as its part."""
    no_r2 = _transformer_ladder(with_r2=False)
    assert no_r2.loc["transformer control", "parent"] == "transformer r1"
    other_g = _transformer_ladder(control_g=16)
    assert other_g.loc["transformer control", "parent"] == "transformer r1"
    no_exact = _transformer_ladder(with_r1=False, with_r2=False)
    assert no_exact.loc["transformer control", "parent"] == ""
    assert no_exact.loc["transformer control", "part"] == pytest.approx(no_exact.loc["transformer control", "gap"])
    assert "no exact transformer rung" in no_exact.loc["transformer control", "cause"]
    no_control = _transformer_ladder(with_control=False)
    assert no_control.loc["transformer", "parent"] == "transformer r2" == no_control.loc["trl", "parent"]
    assert no_control.loc["transformer", "part"] == pytest.approx(0.17 - 0.05, abs=1e-12)
    alone = _transformer_ladder(with_r1=False, with_r2=False, with_control=False)
    assert alone.loc["transformer", "parent"] == "" and "no exact" in alone.loc["transformer", "cause"]
    assert alone.loc["transformer", "part"] == pytest.approx(0.17, abs=1e-12)


# --------------------------------------------------------------------------- E4 without an explicit penalty
def test_e4_reports_the_effective_beta_per_learning_rate_of_a_run_without_a_penalty():
    """trl's lr sweep around kl=mirror (TRL's beta = 0): each run behaves like C3 under kl=mirror with a
    beta that falls as the step grows (built here as beta_eff = 0.004 / lr). E4 must recover each beta
    from the trajectory alone, list it per lr, and keep those runs out of C3's check (no penalty applied)."""
    p_ref = np.linspace(0.1, 0.8, 16)
    mirror, ref = VARIANTS["mean_std_mirror"], VARIANTS["mean_std_ref"]
    b = Builder(p_ref)
    b.add("trl", "mean_std_ref", ref, "variant", [_c3(p_ref, ref)] * 2)
    built = {}
    for lr in (1e-3, 2e-3, 4e-3):
        built[lr] = 0.004 / lr
        b.add("trl", f"mean_std_mirror-lr{lr:g}", mirror, "lr", [_c3(p_ref, mirror, beta=built[lr])] * 2, lr=lr)
    table = claims_table(b.study())
    e4 = _row(table, "E4", "trl")
    assert e4["verdict"] == "holds" and e4["value"] < 1e-3
    per_lr = e4["evidence"].split("beta_eff per lr: ")[1].split("; ")[0].split(", ")
    assert [s.split(":")[0] for s in per_lr] == ["lr 0.001", "lr 0.002", "lr 0.004"]
    fitted = [float(s.split(": ")[1]) for s in per_lr]
    np.testing.assert_allclose(fitted, [built[lr] for lr in (1e-3, 2e-3, 4e-3)], rtol=5e-3)
    # C3's check sees the one run with TRL's explicit penalty, not the lr sweep's runs
    assert "mirror" not in _row(table, "C3", "trl")["evidence"]
