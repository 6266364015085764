"""grpo_amp.figures on a small synthetic scale directory whose predictions come from grpo_amp.theory."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grpo_amp import theory
from grpo_amp.figures import FIGURES, make_figure
from grpo_amp.runs import PRACTICE_POLICIES, parse_run, run_name
from grpo_amp.schema import PREDICT_COLUMNS, RUN_COLUMNS

REPO = Path(__file__).resolve().parents[1]
N_TRAIN, N_HELDOUT, N_ITERS = 10, 4, 4
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# variant -> (norm, kl, beta, beta_prev, eps), as conf/variant/*.yaml
VARIANTS = {
    "mean_std_ref": ("mean_std", "ref", 1.0, 0.0, 0.0),
    "mean_std_mirror": ("mean_std", "mirror", 1.0, 0.0, 0.0),
    "mean_std_both": ("mean_std", "both", 1.0, 1.0, 0.0),
    "mean_only_ref": ("mean_only", "ref", 1.0, 0.0, 0.0),
    "mean_std_ref_eps": ("mean_std", "ref", 1.0, 0.0, 0.01),
}
PLAIN = list(VARIANTS)
BASE = "mean_std_ref"
STUDY = {  # policy -> run names, every sweep around BASE (practice policies only for G, M, estimator, clip)
    "tabular_exact": PLAIN + [run_name(BASE, "beta", b) for b in (0.5, 2.0)],
    "tabular_sgd": PLAIN + [run_name(BASE, "beta", b) for b in (0.5, 2.0)]
    + [run_name(BASE, "group_size", g) for g in (4, 8, 32)]  # G8 repeats the base run's G
    + [run_name(BASE, "inner_steps", m) for m in (1, 32)]
    + [run_name(BASE, "kl_estimator", "k3"), run_name(BASE, "clip_eps", 0.2)],
    "transformer": ["mean_std_ref", "mean_only_ref", run_name(BASE, "beta", 0.5)],
}


def _run_settings(policy: str, name: str) -> dict:
    variant, sweep, value = parse_run(name)
    norm, kl, beta, beta_prev, eps = VARIANTS[variant]
    practice = policy in PRACTICE_POLICIES
    row = dict(policy=policy, run=name, variant=variant, sweep=sweep, norm=norm, kl=kl, beta=beta,
               beta_prev=beta_prev, eps=eps, std="population", group_size=8 if practice else np.nan,
               inner_steps=12 if practice else np.nan, clip_eps=np.nan,
               kl_estimator="exact" if practice else np.nan, iterations=N_ITERS)
    if sweep != "variant":
        row[sweep] = value if sweep == "kl_estimator" else float(value)
    return row


def _long(values: dict[str, np.ndarray], p_ref: np.ndarray, split: str, offset: int) -> pd.DataFrame:
    """Arrays of shape (iterations + 1, questions) -> PREDICT_COLUMNS rows."""
    n_it, n_q = values["pos"].shape
    out = pd.DataFrame({"question": np.tile(np.arange(n_q) + offset, n_it), "split": split,
                        "iteration": np.repeat(np.arange(n_it), n_q), "p_ref": np.tile(p_ref, n_it)})
    for col, arr in values.items():
        out[col] = arr.ravel()
    out["pos_lo"] = np.clip(out["pos"] - 0.03, 0, 1)
    out["pos_hi"] = np.clip(out["pos"] + 0.03, 0, 1)
    return out


def _predict(row: dict, rng: np.random.Generator) -> pd.DataFrame:
    kw = dict(kl=row["kl"], beta=row["beta"], beta_prev=row["beta_prev"], norm=row["norm"], eps=row["eps"])
    G = None if np.isnan(row["group_size"]) else int(row["group_size"])
    p_ref = rng.uniform(0.03, 0.9, N_TRAIN)
    traj = theory.pos_recurrence(p_ref, N_ITERS, **kw)
    traj_G = theory.pos_recurrence(p_ref, N_ITERS, **kw, group_size=G) if G else np.full_like(traj, np.nan)
    pos = traj.copy()
    if G:  # practice: near the finite-G prediction, with noise
        pos[1:] = np.clip(traj_G[1:] + rng.normal(0, 0.03, traj[1:].shape), 0.001, 0.999)

    def one_step(group_size):
        return np.vstack([np.full(N_TRAIN, np.nan), theory.pos_step(pos[:-1], p_ref, **kw, group_size=group_size)])

    values = dict(pos=pos, pred_trajectory=traj, pred_one_step=one_step(None), pred_trajectory_G=traj_G,
                  pred_one_step_G=one_step(G) if G else np.full_like(traj, np.nan),
                  pred_limit=np.tile(theory.predicted_limit(p_ref, **kw), (N_ITERS + 1, 1)))
    frames = [_long(values, p_ref, "train", 0)]
    if row["policy"] == "transformer":  # held-out questions: some gain, no prediction
        h_ref = rng.uniform(0.05, 0.8, N_HELDOUT)
        h_pos = np.clip(h_ref + 0.03 * np.arange(N_ITERS + 1)[:, None], 0, 1)
        nan = np.full_like(h_pos, np.nan)
        frames.append(_long(dict(pos=h_pos, **{c: nan for c in values if c != "pos"}), h_ref, "heldout", N_TRAIN))
    # reindex: a column the figures do not read (kl_in_correct, ...) is written as NaN
    return pd.concat(frames, ignore_index=True).reindex(columns=PREDICT_COLUMNS)


def _summaries(df: pd.DataFrame) -> dict:
    train = df[(df["split"] == "train") & (df["iteration"] >= 1)]
    last = df[df["iteration"] == N_ITERS]
    gaps = {f"gap_{k}": (train["pos"] - train[f"pred_{k}"]).abs().mean()
            for k in ("trajectory", "one_step", "trajectory_G", "one_step_G")}
    held = df[df["split"] == "heldout"]
    gain = held.groupby("iteration")["pos"].mean() if len(held) else None
    return dict(final_pos_mean=last.loc[last["split"] == "train", "pos"].mean(),
                pred_final_mean=last["pred_trajectory"].mean(),
                heldout_gain=np.nan if gain is None else gain.iloc[-1] - gain.iloc[0],
                beta_eff=np.nan, beta_eff_rmse=np.nan, **gaps)


def write_scale(D: Path, study: dict[str, list[str]]) -> Path:
    D.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for policy, names in study.items():
        for name in names:
            row = _run_settings(policy, name)
            df = _predict(row, rng)
            path = D / "predict" / policy / f"{name}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            df.to_csv(path, index=False)
            rows.append({**row, **_summaries(df)})
    pd.DataFrame(rows, columns=RUN_COLUMNS).to_csv(D / "runs.csv", index=False)
    return D


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert 300 <= width <= 6000 and 150 <= height <= 4000, (path, width, height)
    assert 5_000 < len(data) < 5_000_000, (path, len(data))


@pytest.mark.parametrize("study", [STUDY, {"tabular_exact": ["mean_std_ref"]}, {}], ids=["full", "one_run", "empty"])
def test_every_figure_renders(tmp_path, study):
    D = write_scale(tmp_path / "scale", study)
    sweeps = set(pd.read_csv(D / "runs.csv")["sweep"])
    assert study is not STUDY or sweeps == {"variant", "beta", "group_size", "inner_steps", "kl_estimator", "clip_eps"}
    out = tmp_path / "figures"
    for name in FIGURES:
        make_figure(name, D, out / f"{name}.png")
        assert_png(out / f"{name}.png")
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.png" for n in FIGURES)  # no .tmp-* left


def test_figure_names_and_captions():
    assert list(FIGURES) == ["trajectories", "per_question", "fixed_points", "normalisation",
                             "regularisation", "practice_gap", "heldout"]
    for name in FIGURES:
        caption = (REPO / "workflows" / "report" / f"{name}.rst").read_text().strip()
        assert caption and any(f"{c}" in caption for c in ("C3", "C4", "C5", "C6", "C7", "E2", "E3")), name
    assert (REPO / "workflows" / "report" / "workflow.rst").read_text().strip()


def test_unknown_figure_and_missing_runs_csv(tmp_path):
    with pytest.raises(ValueError, match="unknown figure"):
        make_figure("nope", tmp_path, tmp_path / "x.png")
    with pytest.raises(ValueError, match="missing input file"):
        make_figure("trajectories", tmp_path, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_figures_never_import_torch():
    code = "import sys, grpo_amp.figures; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
