"""Task draws (issue 20): run names, the study's fields, each draw's own task and pi_ref, draws.csv's numbers.

The pipeline check (a smoke study with ``--config task_draws=2``) is marked slow, like tests/test_pipeline.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as student_t

from grpo_amp import paths
from grpo_amp.analysis.draws import draws_table, over_draws
from grpo_amp.config import DRAW_SEED_STRIDE, ConfigError, StudyConfig, compose_config
from grpo_amp.io import InputError
from grpo_amp.schema import DRAWS_COLUMNS
from grpo_amp.study import runs


# --------------------------------------------------------------------------- run names and the study's fields
def test_a_draw_run_name_round_trips_to_its_overrides():
    name = runs.run_name("mean_std_ref", "draw", 2)
    assert name == "mean_std_ref-draw2"
    assert runs.parse_run(name) == ("mean_std_ref", "draw", "2")
    assert runs.run_overrides(name) == ["variant=mean_std_ref", "run_name=mean_std_ref-draw2", "task.draw=2"]
    assert runs.draw_of(name) == 2 and runs.draw_of("mean_std_ref") == 0 and runs.draw_of("mean_std_ref-G32") == 0
    cfg = compose_config(["policy=transformer", "scale=smoke", *runs.run_overrides(name)])
    assert cfg.task.draw == 2
    assert paths.path(paths.REFERENCE, cfg) == Path("results/smoke/reference/transformer-draw2")


def test_a_signed_run_trains_from_the_signed_tasks_own_reference():
    """C2's -sign1 run: task.plus_sign on, and its pi_ref the signed reference (reference_name round-trips)."""
    name = runs.run_name("mean_std_ref", "plus_sign", 1)
    assert name == "mean_std_ref-sign1" and runs.signed_of(name) and not runs.signed_of("mean_std_ref-draw2")
    assert runs.run_overrides(name) == ["variant=mean_std_ref", "run_name=mean_std_ref-sign1", "task.plus_sign=1"]
    cfg = compose_config(["policy=transformer", "scale=smoke", *runs.run_overrides(name)])
    assert cfg.task.plus_sign is True and cfg.task.draw == 0
    assert paths.path(paths.REFERENCE, cfg) == Path("results/smoke/reference/transformer-signed")
    for family, draw, signed in (("transformer", 0, True), ("transformer", 2, True), ("twin", 1, False), ("tabular", 0, False)):
        assert paths.parse_reference_name(paths.reference_name(family, draw, signed)) == (family, draw, signed)
    with pytest.raises(InputError, match="sign2"):
        runs.parse_run("mean_std_ref-sign2")  # the only value is 1: the plain task is the plain run


@pytest.mark.parametrize("bad", ["mean_std_ref-draw0", "mean_std_ref-drawx", "mean_std_ref-draw-1"])
def test_a_bad_draw_value_fails_in_one_line_naming_it(bad):
    with pytest.raises(InputError) as info:
        runs.parse_run(bad)
    message = str(info.value)
    assert "\n" not in message and bad in message


def test_the_study_rejects_zero_draws_and_an_unknown_draw_policy_naming_the_field():
    with pytest.raises(ConfigError, match=r"^scale\.study\.task_draws must be >= 1; got 0$"):
        StudyConfig(task_draws=0)
    with pytest.raises(ConfigError, match=r"^scale\.study\.draw_policies must be one of .*; got 'nope'$"):
        StudyConfig(draw_policies=["transformer", "nope"])


def test_draw_runs_are_the_base_variant_of_the_draw_policies_only():
    study = StudyConfig(policies=["tabular_sgd", "tabular_exact"], task_draws=3,
                        draw_policies=["tabular_sgd", "transformer"])  # transformer is not in policies
    assert runs.draw_runs_of_study(study, "tabular_sgd") == ["mean_std_ref-draw1", "mean_std_ref-draw2"]
    assert runs.draw_runs_of_study(study, "tabular_exact") == []
    assert runs.draw_runs_of_study(study, "transformer") == []
    assert "mean_std_ref-draw1" not in runs.runs_of_study(study, "tabular_sgd")  # never in runs.csv
    assert runs.load_study("smoke").task_draws == 1  # smoke: no draw run, every file as before
    assert runs.load_study("default").task_draws == 3 and runs.load_study("full").task_draws == 5


# --------------------------------------------------------------------------- each draw its own task and pi_ref
def _reference(tmp_path: Path, family_policy: str, draw: int, *extra: str) -> Path:
    """Run the reference stage for ``draw`` into tmp_path; its directory."""
    from grpo_amp.stages import reference

    cfg = compose_config([f"policy={family_policy}", "scale=smoke", f"results={tmp_path}", f"task.draw={draw}", *extra])
    reference.run(cfg)
    return paths.path(paths.REFERENCE, cfg)


def _digest(directory: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.iterdir()) if f.is_file()}


def test_tabular_draws_differ_and_a_draw_repeats_exactly(tmp_path):
    d0 = _reference(tmp_path / "a", "tabular_exact", 0)
    d1 = _reference(tmp_path / "a", "tabular_exact", 1)
    d1_again = _reference(tmp_path / "b", "tabular_exact", 1)
    assert d0.name == "tabular" and d1.name == "tabular-draw1"
    q0, q1 = pd.read_csv(d0 / "questions.csv"), pd.read_csv(d1 / "questions.csv")
    assert (q0["answers"] != q1["answers"]).mean() > 0.5  # another table of correct sets
    weights0, weights1 = _digest(d0), _digest(d1)
    assert {k for k in weights0 if k.endswith(".safetensors")}
    assert all(weights0[k] != weights1[k] for k in weights0 if k.endswith(".safetensors"))  # another p_ref table
    assert _digest(d1) == _digest(d1_again)  # seeded: the same draw is the same bytes


def test_modarith_draws_have_another_split_noise_and_pi_ref(tmp_path):
    steps = "policy.reference.steps=3"  # pi_ref's init and batches are what the draw's seed moves
    d0 = _reference(tmp_path / "a", "transformer", 0, steps)
    d2 = _reference(tmp_path / "a", "transformer", 2, steps)
    d2_again = _reference(tmp_path / "b", "transformer", 2, steps)
    q0, q2 = pd.read_csv(d0 / "questions.csv"), pd.read_csv(d2 / "questions.csv")
    held0 = set(q0.loc[q0["split"] == "heldout", "prompt"])
    held2 = set(q2.loc[q2["split"] == "heldout", "prompt"])
    assert held0 != held2  # another split
    assert not np.allclose(q0["noise_rate"].to_numpy(), q2["noise_rate"].to_numpy())  # other label-noise rates
    weights0, weights2 = _digest(d0), _digest(d2)
    assert {k for k in weights0 if k.endswith(".safetensors")}
    assert all(weights0[k] != weights2[k] for k in weights0 if k.endswith(".safetensors"))  # another pi_ref
    assert _digest(d2) == _digest(d2_again)
    from grpo_amp.stages.reference import for_draw

    cfg = compose_config(["policy=transformer", "scale=smoke", "task.draw=2"])
    assert (for_draw(cfg).seed, for_draw(cfg).task.seed) == (cfg.seed + 2 * DRAW_SEED_STRIDE,
                                                             cfg.task.seed + 2 * DRAW_SEED_STRIDE)


# --------------------------------------------------------------------------- draws.csv's numbers
def _pred(final_pos_by_seed: dict[int, float], c3: float = 0.5) -> pd.DataFrame:
    """A predict frame of one train question, iterations 0 and 1: p_1 per seed, C3's p_1 = c3 (C3_G: c3 + 0.1)."""
    rows = []
    for seed, p1 in final_pos_by_seed.items():
        for n, p in ((0, 0.3), (1, p1)):
            rows.append({"question": 0, "seed": seed, "split": "train", "iteration": n, "p_ref": 0.3, "pos": p,
                         "pred_trajectory": 0.3 if n == 0 else c3, "pred_trajectory_G": 0.3 if n == 0 else c3 + 0.1})
    return pd.DataFrame(rows)


def test_draws_csv_is_a_t_interval_over_draw_means():
    # three draws of two seeds: final PoS per seed, C3 = 0.5 everywhere
    seeds = {0: {0: 0.60, 1: 0.70}, 1: {0: 0.40, 1: 0.44}, 2: {0: 0.52, 1: 0.50}}
    frames = {("tabular_sgd", k): _pred(v) for k, v in seeds.items()}
    table = draws_table(frames, "mean_std_ref")
    assert list(table.columns) == DRAWS_COLUMNS
    final = table[table["metric"] == "final_pos"].iloc[0]
    draw_means = np.array([0.65, 0.42, 0.51])  # by hand: each draw's mean over its seeds
    mean, sd = draw_means.mean(), draw_means.std(ddof=1)
    half = student_t.ppf(0.975, 2) * sd / np.sqrt(3)  # t with n_draws - 1 = 2 degrees of freedom, not 5
    assert final["n_draws"] == 3 and final["n_seeds"] == 2
    assert final["per_draw"] == "0.65|0.42|0.51"
    assert final["mean"] == pytest.approx(mean) and final["between_draw_sd"] == pytest.approx(sd)
    assert final["lo"] == pytest.approx(mean - half) and final["hi"] == pytest.approx(mean + half)
    within = np.sqrt((0.05 ** 2 * 2 + 0.02 ** 2 * 2 + 0.01 ** 2 * 2) / 3)  # pooled over 3 draws x (2 - 1) dof
    assert final["within_draw_sd"] == pytest.approx(within)
    bias = table[table["metric"] == "bias"].iloc[0]  # p_1 - C3, mean over iterations n >= 1
    assert bias["mean"] == pytest.approx(mean - 0.5)
    gap_g = table[table["metric"] == "gap_G"].iloc[0]  # |p_1 - 0.6|: 0.05, 0.18, 0.09 per draw
    assert gap_g["per_draw"] == "0.05|0.18|0.09"


def test_draws_csv_compares_a_transformer_run_with_its_twin_per_draw():
    frames = {("transformer", 0): _pred({0: 0.7, 1: 0.8}), ("transformer", 1): _pred({0: 0.6, 1: 0.6}),
              ("twin_sgd", 0): _pred({0: 0.55}), ("twin_sgd", 1): _pred({0: 0.45})}
    table = draws_table(frames, "mean_std_ref").set_index(["policy", "metric"])
    row = table.loc[("transformer", "gap_vs_twin_sgd")]
    # per draw: transformer's mean gap - twin's: (0.25 - 0.05), (0.10 - 0.05)
    assert row["per_draw"] == "0.2|0.05"
    assert row["mean"] == pytest.approx(0.125)
    assert ("twin_sgd", "gap_vs_twin_sgd") not in table.index


def test_one_draw_is_a_point_with_no_spread():
    row = over_draws([np.array([0.1, 0.3])])
    assert (row["mean"], row["lo"], row["hi"]) == pytest.approx((0.2, 0.2, 0.2))
    assert np.isnan(row["between_draw_sd"]) and row["n_draws"] == 1


# --------------------------------------------------------------------------- the pipeline
@pytest.mark.slow
def test_a_smoke_study_with_two_draws_writes_draws_csv_and_leaves_every_other_summary_alone(tmp_path, smoke_study):
    """``--config task_draws=2`` at smoke: every draw policy's base run on draw 1 from its own reference, draws.csv
    with 2 draws each, and runs.csv, claims.csv and ladder.csv the same bytes as the plain smoke study's (the draw
    runs enter draws.csv only; draw 0 is the plain run)."""
    from helpers.pipeline import CORES, run_snakemake

    rc, out = run_snakemake(tmp_path, "--cores", CORES, config=("tracking=false", "task_draws=2"))
    assert rc == 0, out[-3000:]
    scale_dir = tmp_path / "results" / "smoke"
    study = runs.load_study("smoke")
    for family in ("tabular", "transformer", "twin"):
        assert (scale_dir / "reference" / f"{family}-draw1" / "questions.csv").is_file()
    table = pd.read_csv(scale_dir / "draws.csv")
    assert list(table.columns) == DRAWS_COLUMNS
    assert set(table["policy"]) == set(study.draw_policies)
    assert (table["n_draws"] == 2).all()
    final = table[(table["policy"] == "transformer") & (table["metric"] == "final_pos")].iloc[0]
    per_draw = [float(x) for x in final["per_draw"].split("|")]
    for k, x in enumerate(per_draw):  # each draw's number from its own pos file: the mean over seeds at the end
        pos = pd.read_csv(scale_dir / "pos" / "transformer" / ("mean_std_ref" + (f"-draw{k}" if k else "") + ".csv"))
        last = pos[(pos["split"] == "train") & (pos["iteration"] == pos["iteration"].max())]
        assert x == pytest.approx(last.groupby("seed")["pos"].mean().mean(), rel=1e-5)
    assert per_draw[0] != per_draw[1]
    for name in ("runs.csv", "claims.csv", "ladder.csv"):
        assert (scale_dir / name).read_bytes() == (smoke_study / name).read_bytes(), name
