"""draws.csv: a policy's numbers over task draws (issue 20), each draw its own task and pi_ref.

    table = draws_table({("transformer", 0): pred0, ("transformer", 1): pred1, ...}, run="mean_std_ref")

Draw 0 is the study's own task and pi_ref (the plain run); draw k >= 1 is the run ``{run}-draw{k}``, trained from
``reference/{family}-draw{k}`` (another split, label-noise rates or p_ref table, and another pi_ref:
config.draw_seed). Per (policy, metric) one row:

    per_draw        each draw's mean over its seeds of the per-seed number (|-joined, draw 0 first)
    mean, lo, hi    the mean of those draw means with a 95% Student-t interval over draws (n_draws - 1 degrees of
                    freedom; the point where there is one draw)
    between_draw_sd the SD of the draw means (ddof 1): how much the number moves with the task and pi_ref
    within_draw_sd  the pooled SD of the per-seed numbers around their draw's mean: how much it moves with the seed

Why draw-level means and not every (draw, seed) pair as one sample: the seeds of a draw share its task and pi_ref,
so they are not independent repeats of "a task drawn from the task distribution"; pooling them as n_draws x
n_seeds samples would take the seed noise for the whole spread and give an interval too narrow whenever draws
differ. The draw means are independent (each draw its own seeds for task and pi_ref), so the t interval over them
is the interval of the number over tasks, with the seed noise inside each draw mean.

Metrics: final_pos (mean train PoS at the last iteration), gap (mean |p_n - C3|, train, n >= 1), gap_G (the same
against C3 with E1's finite-group S_G), bias and bias_G (signed: p_n - C3), and for a transformer policy with a
twin counterpart (TWIN_OF) gap_vs_twin: its gap minus the twin rung's gap on the same draw's questions, what the
shared parameters add (the ladder's vs_twin, here over draws; its per-seed numbers are the policy's seed gaps minus
the twin's mean gap on that draw, so its within_draw_sd is the policy's seed spread alone). Pure pandas/numpy: reads frames, writes nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from grpo_amp.analysis.stats import seed_interval
from grpo_amp.analysis.summaries import mean_bias, mean_gap, train_rows
from grpo_amp.schema import DRAWS_COLUMNS

# a transformer policy -> the twin policy whose base run is its counterpart on identical questions (the ladder's
# TWIN_OF: transformer and trl - twin R6, transformer_r2 - twin R2; the control's twin R4 runs at the m sweep,
# which has no draw runs)
TWIN_OF = {"transformer": "twin_sgd", "trl": "twin_sgd", "transformer_r2": "twin_r2", "transformer_r1": "twin_r1"}


def seed_numbers(pred: pd.DataFrame) -> pd.DataFrame:
    """One row per seed of one run's predict frame: the per-seed numbers draws.csv summarises."""
    rows = []
    for seed, g in pred.groupby("seed", sort=True):
        train = train_rows(g)
        last = train[train["iteration"] == train["iteration"].max()]
        rows.append({"seed": seed, "final_pos": float(last["pos"].mean()),
                     "gap": mean_gap(g, "pred_trajectory"), "gap_G": mean_gap(g, "pred_trajectory_G"),
                     "bias": mean_bias(g, "pred_trajectory"), "bias_G": mean_bias(g, "pred_trajectory_G")})
    return pd.DataFrame(rows)


METRICS = ("final_pos", "gap", "gap_G", "bias", "bias_G")


def over_draws(per_draw: list[np.ndarray]) -> dict:
    """The row's numbers from each draw's per-seed values (one array per draw, in draw order)."""
    per_draw = [np.asarray(v, float)[np.isfinite(np.asarray(v, float))] for v in per_draw]
    per_draw = [v for v in per_draw if len(v)]
    means = np.array([v.mean() for v in per_draw])
    mean, lo, hi = seed_interval(means)  # Student t over the draw means: n_draws - 1 degrees of freedom
    between = float(means.std(ddof=1)) if len(means) > 1 else np.nan
    dof = sum(len(v) - 1 for v in per_draw)
    within = float(np.sqrt(sum(((v - v.mean()) ** 2).sum() for v in per_draw) / dof)) if dof > 0 else np.nan
    return {"n_draws": len(means), "n_seeds": int(min((len(v) for v in per_draw), default=0)),
            "per_draw": "|".join(f"{m:.6g}" for m in means), "mean": mean, "lo": lo, "hi": hi,
            "between_draw_sd": between, "within_draw_sd": within}


def draws_table(predictions: dict[tuple[str, int], pd.DataFrame], run: str) -> pd.DataFrame:
    """draws.csv from every draw policy's predict frames, keyed (policy, draw); ``run`` names the base run."""
    numbers = {key: seed_numbers(pred) for key, pred in predictions.items()}
    policies = list(dict.fromkeys(p for p, _ in predictions))
    rows = []
    for policy in policies:
        draws = sorted(k for p, k in numbers if p == policy)
        for metric in METRICS:
            values = [numbers[(policy, k)][metric].to_numpy() for k in draws]
            if all(np.isnan(v).all() for v in values):
                continue  # no such number for this policy (no finite-G prediction)
            rows.append({"policy": policy, "run": run, "metric": metric, **over_draws(values)})
        twin = TWIN_OF.get(policy)
        shared = [k for k in draws if (twin, k) in numbers]
        if shared:  # per draw: the policy's seed gaps minus the twin's mean gap (the twin run on the same questions)
            values = [numbers[(policy, k)]["gap"].to_numpy() - numbers[(twin, k)]["gap"].mean() for k in shared]
            rows.append({"policy": policy, "run": run, "metric": f"gap_vs_{twin}", **over_draws(values)})
    return pd.DataFrame(rows, columns=DRAWS_COLUMNS)
