"""grpo_amp.analysis.figures on a small synthetic scale directory, written the way the rules write it.

Per run: a pos table (POS_COLUMNS, one block per seed) whose measured PoS is C3 (the exact control)
or C3 with E1's S_G plus noise (sampled policies), turned into the predict CSV by
``predict.predict_frame``, the curves CSV by ``predict.curves_frame``, a runs.csv row by
``summaries.summarise_run`` and, over all runs, ladder.csv by ``ladder.ladder_table``.
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
from grpo_amp.analysis.figures import FIGURES, NO_DATA, make_figure
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
BASE = "mean_std_ref"
STUDY = {  # policy -> run names, every sweep around BASE
    "tabular_exact": PLAIN + [run_name(BASE, "beta", b) for b in (0.5, 2.0)],
    "tabular_r1": [BASE], "tabular_r2": [BASE], "tabular_r3": [BASE],
    # E5's factorial: its eight cells in every plain variant (five panels: the figure wraps them)
    **{p: PLAIN for p in registry.CELLS.values() if p != "tabular_sgd"},
    "tabular_r4": [BASE, run_name(BASE, "groups_per_question", 4)],
    "tabular_sgd": PLAIN + [run_name(BASE, "beta", b) for b in (0.5, 2.0)]
    + [run_name(BASE, "group_size", g) for g in (4, 32)]
    + [run_name(BASE, "inner_steps", m) for m in (1, 32)]
    + [run_name(BASE, "kl_estimator", "k3"), run_name(BASE, "clip_eps", 0.2)],
    "transformer": [BASE, "mean_only_ref", run_name(BASE, "beta", 0.5)],
    "trl": [BASE],
}


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


def _pos(policy: str, row: dict, v: VariantConfig, rng) -> pd.DataFrame:
    """POS_COLUMNS: C3 for a deterministic policy; C3 with S_G plus noise, per seed, for a sampled one."""
    p_ref = np.linspace(0.1, 0.85, N_TRAIN)
    kw = dict(kl=v.kl.value, beta=v.beta, beta_prev=v.beta_prev, norm=v.norm.value, eps=v.eps, std=v.std.value)
    sampled = registry.policy(policy).sampled
    traj = theory.pos_recurrence(p_ref, N_ITERS, group_size=row["group_size"] if sampled else None, **kw)
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
                                        "kl_in_correct": 0.0}))
    return pd.concat(frames, ignore_index=True)[POS_COLUMNS]


def write_scale(D: Path, study: dict[str, list[str]], ladder: bool = True) -> Path:
    D.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows, predictions = [], {}
    for policy, names in study.items():
        for name in names:
            settings, v = _settings(policy, name)
            pred = predict_frame(_pos(policy, settings, v, rng), v, settings["group_size"])
            for sub, df in (("predict", pred), ("curves", curves_frame(v, settings["group_size"]))):
                path = D / sub / policy / f"{name}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                df.to_csv(path, index=False)
            predictions[(policy, name)] = pred
            rows.append({"policy": policy, "run": name, **settings, **summarise_run(pred, settings)})
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    runs.to_csv(D / "runs.csv", index=False)
    if ladder:
        ladder_table(runs, predictions).to_csv(D / "ladder.csv", index=False)
        factorial_table(runs, predictions).to_csv(D / "factorial.csv", index=False)
        attribution_table(runs, predictions).to_csv(D / "attribution.csv", index=False)
    return D


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.texts] + [t.get_text() for ax in fig.axes for t in ax.texts]


def _drawn(fig) -> int:
    """Data artists on the figure's axes: lines, collections (scatters, bands) and patches (bars)."""
    return sum(len(ax.lines) + len(ax.collections) + len(ax.patches) for ax in fig.axes)


@pytest.fixture(scope="module")
def full_scale(tmp_path_factory) -> Path:
    return write_scale(tmp_path_factory.mktemp("full") / "scale", STUDY)


def test_the_synthetic_scale_is_what_the_rules_write(full_scale):
    runs = read_csv(full_scale / "runs.csv", RUN_COLUMNS)
    assert set(runs["sweep"]) == {"variant", "beta", "group_size", "inner_steps", "kl_estimator", "clip_eps",
                                  "groups_per_question"}
    assert set(runs.loc[runs["policy"] == "tabular_sgd", "n_seeds"]) == {3}
    exact = runs[runs["policy"] == "tabular_exact"]
    assert (exact["n_seeds"] == 1).all() and (exact["gap_trajectory"] < 1e-12).all()  # measured = C3
    ladder = read_csv(full_scale / "ladder.csv", LADDER_COLUMNS)
    assert {"R1", "R2", "R3", "R4 (m = 4)", "R6"} <= set(ladder["rung"])
    read_csv(full_scale / "curves" / "tabular_sgd" / f"{BASE}.csv", CURVE_COLUMNS)
    read_csv(full_scale / "predict" / "transformer" / f"{BASE}.csv", PREDICT_COLUMNS)


@pytest.mark.parametrize("name", registry.FIGURE_NAMES)
def test_every_figure_draws_data(full_scale, name):
    runs = read_csv(full_scale / "runs.csv", RUN_COLUMNS)
    fig = FIGURES[name](full_scale, runs)
    assert _drawn(fig) > 0, name
    assert not any(NO_DATA in t for t in _texts(fig)), (name, _texts(fig))


def test_heldout_draws_a_panel_per_plain_run_of_the_transformer_family(full_scale):
    """E3 is claimed for every transformer-family policy, so its figure shows each one's plain runs."""
    runs = read_csv(full_scale / "runs.csv", RUN_COLUMNS)
    fig = FIGURES["heldout"](full_scale, runs)
    titles = [ax.get_title().split("\n")[0] for ax in fig.axes if ax.get_title()]
    assert titles == ["transformer/mean_std_ref", "transformer/mean_only_ref", "trl/mean_std_ref"], titles
    for ax, title in zip(fig.axes, titles):  # each panel draws its own policy's held-out PoS, not a pool
        policy = title.split("/")[0]
        want = 0.3 + HELDOUT_SLOPE[policy] * np.arange(N_ITERS + 1)
        assert any(np.allclose(line.get_ydata(), want) for line in ax.lines), (title, [line.get_ydata()[-1] for line in ax.lines])


def test_factorial_draws_a_wrapped_panel_per_variant_no_wider_than_2400_px(full_scale, tmp_path):
    runs = read_csv(full_scale / "runs.csv", RUN_COLUMNS)
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
    runs = read_csv(D / "runs.csv", RUN_COLUMNS)
    fig = FIGURES["fixed_points"](D, runs)
    assert any(NO_DATA in t for t in _texts(fig)) and _drawn(fig) == 0
    assert not any(NO_DATA in t for t in _texts(FIGURES["trajectories"](D, runs)))  # the plain runs still draw
    assert any(NO_DATA in t for t in _texts(FIGURES["gap_ladder"](D, runs)))       # no ladder.csv


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert 300 <= width <= 6000 and 150 <= height <= 4000, (path, width, height)
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
        assert caption and any(c in caption for c in ("C3", "C4", "C5", "C6", "C7", "E2", "E3", "E5")), name
    assert (REPO / "workflows" / "report" / "workflow.rst").read_text().strip()


def test_unknown_figure_and_missing_runs_csv(tmp_path):
    with pytest.raises(ValueError, match="unknown figure"):
        make_figure("nope", tmp_path, tmp_path / "x.png")
    with pytest.raises(ValueError, match="missing input file"):
        make_figure("trajectories", tmp_path, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_figures_never_import_torch():
    code = "import sys, grpo_amp.analysis.figures; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
