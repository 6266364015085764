"""grpo_amp.analysis.figures on a small synthetic scale directory, written the way the rules write it.

Per run: a pos table (POS_COLUMNS, one block per seed) whose measured PoS is C3 (the exact control),
C3 with E1's S_G plus noise (sampled policies) or, for an E6 estimator run, C3 with that estimator's S_G
(plus noise where sampled), turned into the predict CSV by
``predict.predict_frame``, the curves CSV by ``predict.curves_frame``, a runs.csv row by
``summaries.summarise_run`` and, over all runs, ladder.csv by ``ladder.ladder_table``. ``write_scale``
returns the ``figures.Sources`` a rule would hand over for these files.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grpo_amp import registry, theory
from grpo_amp.config import KLTarget, Norm, VariantConfig
from grpo_amp.analysis import figures as figs
from grpo_amp.analysis.figures import FIGURES, NO_DATA, Sources, make_figure
from grpo_amp.estimators import resolve
from grpo_amp.io import read_csv
from grpo_amp.analysis.factorial import attribution_table, factorial_table
from grpo_amp.analysis.ladder import ladder_table
from grpo_amp.analysis.predict import curves_frame, predict_frame
from grpo_amp.study.runs import parse_run, run_name
from grpo_amp.schema import CURVE_COLUMNS, LADDER_COLUMNS, POS_COLUMNS, PREDICT_COLUMNS, RUN_COLUMNS, RUN_SETTINGS
from grpo_amp.analysis.summaries import summarise_run

REPO = Path(__file__).resolve().parents[1]
N_TRAIN, N_HELDOUT, N_ITERS = 8, 4, 4
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VARIANTS = {  # as conf/variant/*.yaml
    "mean_std_ref": VariantConfig(name="mean_std_ref"),
    "mean_std_mirror": VariantConfig(name="mean_std_mirror", kl=KLTarget.mirror),
    "mean_std_both": VariantConfig(name="mean_std_both", kl=KLTarget.both, beta_prev=1.0),
    "mean_only_ref": VariantConfig(name="mean_only_ref", norm=Norm.mean_only),
    "mean_std_ref_eps": VariantConfig(name="mean_std_ref_eps", eps=0.01),
}
PLAIN = list(VARIANTS)
ESTIMATOR_RUNS = ("dr_grpo", "rloo", "dapo")  # E6: the estimator sweep (tabular_sgd, tabular_r2)
BASE = "mean_std_ref"
STUDY = {  # policy -> run names, every sweep around BASE
    "tabular_exact": PLAIN + [run_name(BASE, "beta", b) for b in (0.5, 2.0)],
    "tabular_r1": [BASE], "tabular_r3": [BASE],
    # E5's factorial: its eight cells in every plain variant (five panels: the figure wraps them)
    **{p: PLAIN for p in registry.CELLS.values() if p != "tabular_sgd"},
    "tabular_r4": [BASE, run_name(BASE, "groups_per_question", 4)],
    "tabular_sgd": PLAIN + [run_name(BASE, "beta", b) for b in (0.5, 2.0)]
    + [run_name(BASE, "group_size", g) for g in (4, 32)]
    + [run_name(BASE, "inner_steps", m) for m in (1, 32)]
    + [run_name(BASE, "kl_estimator", "k3"), run_name(BASE, "clip_eps", 0.2)]
    + [run_name(BASE, "estimator", e) for e in ESTIMATOR_RUNS],
    "transformer": [BASE, "mean_only_ref", run_name(BASE, "beta", 0.5)],
    "trl": [BASE],
}
STUDY["tabular_r2"] = STUDY["tabular_r2"] + [run_name(BASE, "estimator", e) for e in ESTIMATOR_RUNS]  # E6 (a cell too)


def _settings(policy: str, name: str) -> tuple[dict, VariantConfig]:
    variant, sweep, value = parse_run(name)
    v = VARIANTS[variant]
    if sweep == "beta":
        v = VariantConfig(name=v.name, norm=v.norm, kl=v.kl, beta=float(value), beta_prev=v.beta_prev, eps=v.eps,
                          std=v.std)
    row = dict(variant=variant, sweep=sweep, norm=v.norm.value, kl=v.kl.value, beta=v.beta, beta_prev=v.beta_prev,
               eps=v.eps, std=v.std.value, group_size=8, inner_steps=12, clip_eps=np.nan, kl_estimator="full_vocab",
               groups_per_question=1, lr=1e-3, estimator="grpo", iterations=N_ITERS)
    if sweep in ("group_size", "inner_steps", "groups_per_question"):
        row[sweep] = int(value)
    elif sweep == "clip_eps":
        row[sweep] = float(value)
    elif sweep in ("kl_estimator", "estimator"):
        row[sweep] = value
    assert set(row) == set(RUN_SETTINGS)
    return {k: row[k] for k in RUN_SETTINGS}, v


HELDOUT_SLOPE = {"transformer": 0.03, "trl": 0.01}


def _estimator(row: dict, v: VariantConfig):
    return resolve(row["estimator"], v.norm.value, v.std.value, v.eps)


def _pos(policy: str, row: dict, v: VariantConfig, rng) -> pd.DataFrame:
    """POS_COLUMNS: C3 for a deterministic policy; C3 with S_G plus noise, per seed, for a sampled one;
    an estimator run (E6): C3 with that estimator's S_G (plus the noise where sampled)."""
    p_ref = np.linspace(0.1, 0.85, N_TRAIN)
    kw = dict(kl=v.kl.value, beta=v.beta, beta_prev=v.beta_prev, norm=v.norm.value, eps=v.eps, std=v.std.value)
    sampled = registry.policy(policy).sampled
    if row["estimator"] != "grpo":
        kw = dict(kl=v.kl.value, beta=v.beta, beta_prev=v.beta_prev, **_estimator(row, v).theory_kwargs())
    group = row["group_size"] if sampled or row["estimator"] != "grpo" else None
    traj = theory.pos_recurrence(p_ref, N_ITERS, group_size=group, **kw)
    frames = []
    for seed in range(3 if sampled else 1):
        pos = traj.copy()
        if sampled:
            pos[1:] = np.clip(pos[1:] + rng.normal(0, 0.02, pos[1:].shape), 0.001, 0.999)
        blocks = [("train", pos, 0)]
        if registry.family_of(policy) == "transformer":  # held-out questions: some gain, never trained on,
            slope = HELDOUT_SLOPE.get(policy, 0.03)         # a policy's own, so panels can be told apart
            blocks.append(("heldout", np.clip(0.3 + slope * np.arange(N_ITERS + 1)[:, None]
                                              + np.zeros(N_HELDOUT), 0, 1), N_TRAIN))
        for split, values, offset in blocks:
            n_it, n_q = values.shape
            frames.append(pd.DataFrame({"question": np.tile(np.arange(n_q) + offset, n_it), "seed": seed,
                                        "split": split, "iteration": np.repeat(np.arange(n_it), n_q),
                                        "pos": values.ravel(), "pos_lo": np.clip(values.ravel() - 0.03, 0, 1),
                                        "pos_hi": np.clip(values.ravel() + 0.03, 0, 1), "method": "exact",
                                        "kl_in_correct": 0.0, "n_correct": 2}))
    return pd.concat(frames, ignore_index=True)[POS_COLUMNS]


def write_scale(D: Path, study: dict[str, list[str]], ladder: bool = True) -> Sources:
    """Write the scale's files under ``D`` and return them as the figures rule hands them over."""
    D.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows, predictions, files = [], {}, {"predict": {}, "curves": {}}
    for policy, names in study.items():
        for name in names:
            settings, v = _settings(policy, name)
            est = _estimator(settings, v)
            pred = predict_frame(_pos(policy, settings, v, rng), v, settings["group_size"], estimator=est)
            for sub, df in (("predict", pred), ("curves", curves_frame(v, settings["group_size"], estimator=est))):
                path = D / sub / policy / f"{name}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                df.to_csv(path, index=False)
                files[sub][(policy, name)] = path
            predictions[(policy, name)] = pred
            rows.append({"policy": policy, "run": name, **settings, **summarise_run(pred, settings)})
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    runs.to_csv(D / "runs.csv", index=False)
    if ladder:
        ladder_table(runs, predictions).to_csv(D / "ladder.csv", index=False)
        factorial_table(runs, predictions).to_csv(D / "factorial.csv", index=False)
        attribution_table(runs, predictions).to_csv(D / "attribution.csv", index=False)
    return Sources(runs=D / "runs.csv", predict=files["predict"], curves=files["curves"],
                   ladder=D / "ladder.csv" if ladder else None, attribution=D / "attribution.csv" if ladder else None)


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.texts] + [t.get_text() for ax in fig.axes for t in ax.texts]


def _drawn(fig) -> int:
    """Data artists on the figure's axes: lines, collections (scatters, bands) and patches (bars)."""
    return sum(len(ax.lines) + len(ax.collections) + len(ax.patches) for ax in fig.axes)


@pytest.fixture(scope="module")
def full_scale(tmp_path_factory) -> Sources:
    return write_scale(tmp_path_factory.mktemp("full") / "scale", STUDY)


def test_the_synthetic_scale_is_what_the_rules_write(full_scale):
    runs = read_csv(full_scale.runs, RUN_COLUMNS)
    assert set(runs["sweep"]) == {"variant", "beta", "group_size", "inner_steps", "kl_estimator", "clip_eps",
                                  "groups_per_question", "estimator"}
    assert set(runs.loc[runs["policy"] == "tabular_sgd", "n_seeds"]) == {3}
    exact = runs[runs["policy"] == "tabular_exact"]
    assert (exact["n_seeds"] == 1).all() and (exact["gap_trajectory"] < 1e-12).all()  # measured = C3
    ladder = read_csv(full_scale.ladder, LADDER_COLUMNS)
    assert {"R1", "R2", "R3", "R4 (m = 4)", "R6"} <= set(ladder["rung"])
    read_csv(full_scale.curves[("tabular_sgd", BASE)], CURVE_COLUMNS)
    read_csv(full_scale.predict[("transformer", BASE)], PREDICT_COLUMNS)


@pytest.mark.parametrize("name", registry.FIGURE_NAMES)
def test_every_figure_draws_data(full_scale, name):
    runs = read_csv(full_scale.runs, RUN_COLUMNS)
    fig = FIGURES[name](full_scale, runs)
    assert _drawn(fig) > 0, name
    assert not any(NO_DATA in t for t in _texts(fig)), (name, _texts(fig))


def test_heldout_draws_a_panel_per_plain_run_of_the_transformer_family(full_scale):
    """E3 is claimed for every transformer-family policy, so its figure shows each one's plain runs."""
    runs = read_csv(full_scale.runs, RUN_COLUMNS)
    fig = FIGURES["heldout"](full_scale, runs)
    titles = [ax.get_title().split("\n")[0] for ax in fig.axes if ax.get_title()]
    assert titles == ["transformer/mean_std_ref", "transformer/mean_only_ref", "trl/mean_std_ref"], titles
    for ax, title in zip(fig.axes, titles):  # each panel draws its own policy's held-out PoS, not a pool
        policy = title.split("/")[0]
        want = 0.3 + HELDOUT_SLOPE[policy] * np.arange(N_ITERS + 1)
        assert any(np.allclose(line.get_ydata(), want) for line in ax.lines), (title, [line.get_ydata()[-1] for line in ax.lines])


def test_factorial_draws_a_wrapped_panel_per_variant_no_wider_than_2400_px(full_scale, tmp_path):
    runs = read_csv(full_scale.runs, RUN_COLUMNS)
    fig = FIGURES["factorial"](full_scale, runs)
    titles = [ax.get_title().split("\n")[0] for ax in fig.axes if ax.get_title()]
    assert titles == PLAIN, titles                               # one panel per variant, in the table's order
    assert len({ax.get_position().y0 for ax in fig.axes if ax.get_title()}) == 2  # 5 panels: two rows of <= 4
    assert all(len(ax.patches) == 6 for ax in fig.axes if ax.get_title())   # chain and Shapley bar per factor
    make_figure("factorial", full_scale, tmp_path / "factorial.png")
    width = struct.unpack(">II", (tmp_path / "factorial.png").read_bytes()[16:24])[0]
    assert width <= 2400, width


def test_fixed_points_without_a_beta_sweep_says_no_data(tmp_path):
    D = write_scale(tmp_path / "scale", {"tabular_exact": [BASE, "mean_only_ref"]}, ladder=False)
    runs = read_csv(D.runs, RUN_COLUMNS)
    fig = FIGURES["fixed_points"](D, runs)
    assert any(NO_DATA in t for t in _texts(fig)) and _drawn(fig) == 0
    assert not any(NO_DATA in t for t in _texts(FIGURES["trajectories"](D, runs)))  # the plain runs still draw
    assert any(NO_DATA in t for t in _texts(FIGURES["gap_ladder"](D, runs)))       # no ladder.csv


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert 300 <= width <= 2400 and 150 <= height <= 6000, (path, width, height)
    assert 5_000 < len(data) < 5_000_000, (path, len(data))


@pytest.mark.parametrize("study", [{"tabular_exact": [BASE]}, {}], ids=["one_run", "empty"])
def test_every_figure_renders_a_png(tmp_path, study):
    D = write_scale(tmp_path / "scale", study, ladder=bool(study))
    out = tmp_path / "figures"
    for name in FIGURES:
        make_figure(name, D, out / f"{name}.png")
        assert_png(out / f"{name}.png")
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.png" for n in FIGURES)  # no .tmp-* left


def test_figure_names_and_captions():
    assert tuple(FIGURES) == registry.FIGURE_NAMES
    for name in FIGURES:
        caption = (REPO / "workflows" / "report" / f"{name}.rst").read_text().strip()
        assert caption and any(c in caption for c in ("C3", "C4", "C5", "C6", "C7", "E2", "E3", "E5", "E6")), name
    assert (REPO / "workflows" / "report" / "workflow.rst").read_text().strip()


def test_unknown_figure_and_missing_runs_csv(tmp_path):
    with pytest.raises(ValueError, match="unknown figure"):
        make_figure("nope", Sources(tmp_path / "runs.csv", {}, {}), tmp_path / "x.png")
    with pytest.raises(ValueError, match="missing input file"):
        make_figure("trajectories", Sources(tmp_path / "runs.csv", {}, {}), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_figures_never_import_torch():
    code = "import sys, grpo_amp.analysis.figures; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def _png_width(path: Path) -> int:
    return struct.unpack(">II", path.read_bytes()[16:24])[0]  # the IHDR chunk


def test_every_png_is_at_most_2400_px_wide(full_scale, tmp_path):
    """Issue 17: panels wrap into rows, so no figure is wider than 2400 px (the ladder's was 8195)."""
    for name in FIGURES:
        make_figure(name, full_scale, tmp_path / f"{name}.png")
        assert _png_width(tmp_path / f"{name}.png") <= 2400, name


PARTIAL = {  # a scale that skips runs: the transformer one variant, only a G sweep, trl not at all
    "tabular_exact": [BASE, "mean_only_ref"],
    "tabular_sgd": [BASE, "mean_std_mirror", run_name(BASE, "group_size", 4)],
    "transformer": [BASE],
}


@pytest.fixture(scope="module")
def partial_scale(tmp_path_factory) -> Sources:
    return write_scale(tmp_path_factory.mktemp("partial") / "scale", PARTIAL, ladder=False)


@pytest.mark.parametrize("scale", ["full_scale", "partial_scale"])
@pytest.mark.parametrize("name", registry.FIGURE_NAMES)
def test_no_panel_is_empty(request, scale, name):
    """Issue 17: every panel a figure draws has data; a panel for a run or sweep the scale skipped (the old
    "not run" panels) is left out. A figure with no data at all is one message panel, nothing else."""
    src = request.getfixturevalue(scale)
    fig = FIGURES[name](src, read_csv(src.runs, RUN_COLUMNS))
    if any(NO_DATA in t for t in _texts(fig)):
        assert len(fig.axes) == 1 and _drawn(fig) == 0, name
        return
    for ax in fig.axes:
        assert ax.axison and len(ax.lines) + len(ax.collections) + len(ax.patches) > 0, (name, ax.get_title())
        assert not any(t.get_text() == "not run" for t in ax.texts), (name, ax.get_title())


def test_trajectory_panels_are_the_runs_that_ran(partial_scale):
    runs = read_csv(partial_scale.runs, RUN_COLUMNS)
    pred = figs.load_predict(partial_scale, figs.plain_runs(runs))
    assert figs.trajectory_panels(pred) == [("tabular_exact", BASE), ("tabular_exact", "mean_only_ref"),
                                            ("tabular_sgd", BASE), ("tabular_sgd", "mean_std_mirror"),
                                            ("transformer", BASE)]


def test_practice_gap_panels_skip_a_sweep_that_did_not_run(partial_scale, full_scale):
    for src, want in ((partial_scale, ["group_size"]), (full_scale, ["group_size", "inner_steps", "categorical"])):
        runs = read_csv(src.runs, RUN_COLUMNS)
        numeric = {s: figs.sweep_runs(runs, s) for s in ("group_size", "inner_steps")}
        categorical = pd.concat([figs.sweep_runs(runs, s) for s in ("kl_estimator", "clip_eps")])
        assert figs.practice_gap_panels(numeric, categorical) == want


def test_grid_wraps_panels_within_the_width():
    assert figs.grid_shape(7, 3.6) == (2, 4)
    assert figs.grid_shape(3, 3.6) == (1, 3)
    assert figs.grid_shape(5, 8.0) == (3, 2)      # 18 in of panels at most: two 8-in panels a row
    assert figs.grid_shape(2, 30.0) == (2, 1)


def _line(fig, gid: str):
    lines = [line for ax in fig.axes for line in ax.lines if line.get_gid() == gid]
    assert len(lines) == 1, (gid, [line.get_gid() for ax in fig.axes for line in ax.lines])
    return lines[0]


@pytest.mark.parametrize("estimator", ("grpo",) + ESTIMATOR_RUNS)
def test_estimator_curves_are_the_theory_of_each_estimator(full_scale, estimator):
    """Plumbing: the E6 figures' curves (drawn from predict's curves CSVs) are theory's S_G and limit of C3_G
    for the estimator's own keywords at G = 8, beta = 1, kl = ref, read at p = 0.2 and 0.6."""
    runs = read_csv(full_scale.runs, RUN_COLUMNS)
    kw = resolve(estimator).theory_kwargs()
    p = np.array([0.2, 0.6])
    s_g = sum(theory.finite_group_weights(p, 8, **kw))
    limit = theory.predicted_limit(p, 1.0, kl="ref", group_size=8, **kw)
    for policy in ("tabular_sgd", "tabular_r2"):
        line = _line(FIGURES["estimators_s_g"](full_scale, runs), f"S_G/{policy}/{estimator}")
        np.testing.assert_allclose(np.interp(p, line.get_xdata(), line.get_ydata()), s_g, rtol=2e-3)
        line = _line(FIGURES["estimators_limits"](full_scale, runs), f"limit_G/{policy}/{estimator}")
        np.testing.assert_allclose(np.interp(p, line.get_xdata(), line.get_ydata()), limit, rtol=2e-3)


def test_measured_steps_of_an_exact_run_lie_on_its_s_g(full_scale):
    """The measured points: tabular_r2's synthetic PoS is C3_G with each estimator's S_G and no noise, so
    beta (logit p_n - logit p_ref) at p_{n-1} is S_G(p_{n-1}) exactly; an anchor at p_{n-1} (the
    mirror's) under kl=ref, or a shift across seeds, would miss it."""
    runs = read_csv(full_scale.runs, RUN_COLUMNS)
    sweep = figs.estimator_runs(runs)
    assert set(sweep.loc[sweep["policy"] == "tabular_r2", "value"]) == {"grpo", *ESTIMATOR_RUNS}
    pred = figs.measured_weight_sum(figs.load_predict(full_scale, sweep[sweep["policy"] == "tabular_r2"]))
    assert len(pred) == N_TRAIN * N_ITERS * (1 + len(ESTIMATOR_RUNS))
    assert set(pred["estimator"]) == {"grpo", *ESTIMATOR_RUNS}
    for name, sub in pred[pred["estimator"] != "grpo"].groupby("estimator"):  # the base: synthetic C3, no G
        # dapo's orbits run to p = 1 (E6): there S_G is inf and the figure's logit is clipped at P_CLIP
        sub = sub[sub[["p_prev", "pos"]].apply(lambda c: c.between(figs.P_CLIP, 1 - figs.P_CLIP)).all(axis=1)]
        assert len(sub) >= N_TRAIN, name
        want = sum(theory.finite_group_weights(sub["p_prev"].to_numpy(), 8, **resolve(name).theory_kwargs()))
        np.testing.assert_allclose(sub["s_measured"], want, rtol=1e-6)


def test_estimator_figures_need_an_estimator_sweep(partial_scale):
    runs = read_csv(partial_scale.runs, RUN_COLUMNS)
    for name in ("estimators_s_g", "estimators_limits"):
        assert any(NO_DATA in t for t in _texts(FIGURES[name](partial_scale, runs))), name


def test_the_stage_reads_only_the_files_its_rule_names(tmp_path):
    from grpo_amp.config import RuleFiles
    from grpo_amp.io import InputError
    from grpo_amp.stages.figures import outputs, sources

    with pytest.raises(InputError, match="inputs.runs"):
        sources(RuleFiles())
    with pytest.raises(InputError, match="inputs.curves_files: 0 files for 1"):
        sources(RuleFiles(runs="r.csv", run_names=["tabular_sgd/mean_std_ref"], predict_files=["p.csv"]))
    with pytest.raises(InputError, match="not policy/run"):
        sources(RuleFiles(runs="r.csv", run_names=["mean_std_ref"], predict_files=["p.csv"], curves_files=["c.csv"]))
    src = sources(RuleFiles(runs="r.csv", run_names=["tabular_sgd/mean_std_ref"], predict_files=["p.csv"],
                            curves_files=["c.csv"]))
    assert src.of("curves", "tabular_sgd", "mean_std_ref") == Path("c.csv") and src.ladder is None
    with pytest.raises(InputError, match="no predict file handed over|handed over no predict"):
        src.of("predict", "tabular_sgd", "mean_only_ref")
    named = [str(tmp_path / f"{n}.png") for n in registry.FIGURE_NAMES]
    assert list(outputs(named).values()) == [Path(f) for f in named]
    with pytest.raises(InputError, match="outputs.figures"):
        outputs(named[::-1])


def test_pack_rows_keeps_each_row_within_the_width():
    assert figs.pack_rows([10.0, 3.0, 3.0, 3.0, 3.0], 18.0) == [[0, 1, 2], [3, 4]]
    assert figs.pack_rows([20.0, 2.0], 18.0) == [[0], [1]]   # too wide for any row: a row of its own
    assert figs.pack_rows([], 18.0) == [[]]
