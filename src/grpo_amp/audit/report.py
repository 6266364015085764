"""The audit's figure (audit.png) and summary (audit.md), from the tables the audit stage wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from grpo_amp.audit.analysis import FIT_RATIO, smoothed, weight_sum
from grpo_amp.io import atomic_path
from grpo_amp.theory import logit


def figure(predict: pd.DataFrame, per_q: pd.DataFrame, overall: dict, theory_kw: dict, group_size, path: Path) -> None:
    """Three panels: mean PoS per step (measured, nominal C3, fitted C3); the shape test; final PoS per question."""
    train = predict[predict["split"] == "train"]
    by_step = train.groupby("step").agg(pos=("pos", "mean"), lo=("pos_lo", "mean"), hi=("pos_hi", "mean"),
                                        nominal=("pred_nominal", "mean"), fit=("pred_fit", "mean")).reset_index()
    fig = Figure(figsize=(13.5, 3.8), dpi=120)
    FigureCanvasAgg(fig)
    a, b, c = fig.subplots(1, 3)
    a.fill_between(by_step["step"], by_step["lo"], by_step["hi"], alpha=0.2, color="C0")
    a.plot(by_step["step"], by_step["pos"], "o-", color="C0", label="measured (band: mean Wilson CI)")
    a.plot(by_step["step"], by_step["nominal"], "--", color="C1", label=f"C3, beta={overall['beta']:g}, nominal n")
    a.plot(by_step["step"], by_step["fit"], ":", color="C2", lw=2,
           label=f"C3 fit: beta={overall['beta_fit']:.3g}, {overall['iterations_per_interval_fit']} it./interval")
    a.set(xlabel="optimiser step", ylabel="mean PoS (train questions)", title="PoS per checkpoint")
    a.legend(fontsize=7)

    wide = train.pivot(index="iteration", columns="question", values="pos").sort_index().to_numpy()
    n = int(overall["n_samples"])
    p_s = smoothed(np.rint(wide * n), n)
    x = weight_sum(p_s[:-1], theory_kw, group_size).ravel()
    y = (logit(p_s[1:]) - logit(p_s[:-1])).ravel()
    b.scatter(x, y, s=6, alpha=0.5, color="C0")
    if np.isfinite(overall["shape_slope"]):
        xs = np.linspace(np.nanmin(x), np.nanmax(x), 50)
        b.plot(xs, overall["shape_intercept"] + overall["shape_slope"] * xs, color="C3",
               label=f"OLS slope {overall['shape_slope']:.3g}, R^2 {overall['shape_r2']:.2f}")
        b.legend(fontsize=7)
    b.set(xlabel="S_G(p_prev) (run's G and estimator)", ylabel="change in logit p over the interval",
          title="shape test (C3: slope = iterations / beta)")

    c.errorbar(per_q["pred_fit_final"], per_q["p_final"], fmt="o", ms=3, alpha=0.7, color="C0",
               yerr=per_q["mc_noise"], elinewidth=0.5)
    c.plot([0, 1], [0, 1], color="0.5", lw=0.8)
    c.set(xlabel="C3 fit: predicted final PoS", ylabel="measured final PoS", title="final checkpoint, per question",
          xlim=(0, 1), ylim=(0, 1))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def markdown(overall: dict, per_q: pd.DataFrame, checkpoints: pd.DataFrame, command: str) -> str:
    """audit.md: what fits and what does not, overall and per question, with the numbers."""
    o = overall
    counts = lambda col: ", ".join(f"{v} {k}" for k, v in per_q[col].value_counts().items())  # noqa: E731
    lines = [
        "# Audit of a GRPO run against the theory", "",
        f"`{command}`", "",
        f"{o['n_checkpoints']} checkpoints (steps {o['steps']}), {o['n_questions']} train questions, "
        f"PoS from {o['n_samples']} samples per question (Monte Carlo, 95% Wilson interval); base = pi_ref.", "",
        "| view | beta | theory iterations | RMSE | MC noise | verdict |", "|---|---|---|---|---|---|",
        f"| C3 nominal (run's beta, one iteration per {o['steps_per_iteration']} steps) | {o['beta']:g} | "
        f"step / {o['steps_per_iteration']} | {o['rmse_nominal']:.4f} | {o['mc_noise']:.4f} | {o['verdict_nominal']} |",
        f"| E4 fit (beta and iterations per checkpoint interval) | {o['beta_fit']:.4g} | "
        f"{o['iterations_per_interval_fit']} per interval | {o['rmse_fit']:.4f} | {o['mc_noise']:.4f} | {o['verdict_fit']} |",
        f"| E4, one iteration per checkpoint (theory.fit_effective_beta) | {o['beta_eff_one_iteration_per_checkpoint']:.4g} "
        f"| 1 per interval | {o['rmse_one_iteration_per_checkpoint']:.4f} | {o['mc_noise']:.4f} | |",
        f"| nothing moves (p_n = p_ref) | | | {o['rmse_constant']:.4f} | {o['mc_noise']:.4f} | |", "",
        f"Verdicts: **fits** where the RMSE is at most {FIT_RATIO} x the Monte Carlo noise (the RMSE a perfect "
        "prediction from a measured p_ref would have), **does not fit** above; **no movement** where p_n = p_ref "
        "fits as well (the checkpoints did not move PoS beyond the noise: the data cannot tell).", "",
        f"Shape test (change in logit p over an interval against S_G(p_prev)): slope {o['shape_slope']:.4g} "
        f"[{o['shape_slope_lo']:.4g}, {o['shape_slope_hi']:.4g}], R^2 {o['shape_r2']:.3f}, residual variance / MC "
        f"noise variance {o['shape_resid_over_noise']:.2f} (about 1: what is left is sampling noise; above: the "
        f"shape misses). C3 with m iterations per interval under kl=mirror predicts slope ~ m/beta; under kl=ref "
        f"the step is towards logit p_ref + S/beta (logit p_n - logit p_ref against S_G(p_prev): slope "
        f"{o['shape_ref_slope']:.4g}, R^2 {o['shape_ref_r2']:.3f}).", "",
        f"Mean PoS: {o['pos_mean_ref']:.4f} (base) -> {o['pos_mean_final']:.4f} (last checkpoint); C3 nominal "
        f"{o['pred_nominal_mean_final']:.4f}, C3 fit {o['pred_fit_mean_final']:.4f}.", "",
        f"Per question (audit_questions.csv): nominal {counts('verdict_nominal')}; fit {counts('verdict_fit')}.", "",
        "## Checkpoints", "", checkpoints.to_markdown(index=False, floatfmt=".4g"), "",
    ]
    return "\n".join(lines)
