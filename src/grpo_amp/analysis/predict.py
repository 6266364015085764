"""C3 from the measured p_ref: what each measured trajectory is compared with (reads files only).

    pred = predict_frame(pos_df, variant=cfg.variant, group_size=cfg.grpo.group_size)

For every trained question: ``pred_trajectory`` iterates C3 from the measured p_ref;
``pred_one_step`` applies one C3 step to the measured p_{n-1} (separating a wrong step from
accumulated drift); the ``_G`` columns use E1's finite-group weights for the run's G; ``pred_limit``
is C4's limit from p_ref. Held-out questions are never trained on: their prediction columns are NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from grpo_amp import theory
from grpo_amp.config import VariantConfig
from grpo_amp.io import InputError
from grpo_amp.schema import CURVE_COLUMNS, PREDICT_COLUMNS
from grpo_amp.trl_family import settings as trl_settings


def _theory_kwargs(variant: VariantConfig) -> dict:
    return dict(kl=variant.kl.value, beta=variant.beta, beta_prev=variant.beta_prev,
                norm=variant.norm.value, eps=variant.eps, std=variant.std.value)


def predict_frame(pos: pd.DataFrame, variant: VariantConfig, group_size: int,
                  finite_group: dict | None = None) -> pd.DataFrame:
    """PREDICT_COLUMNS for every row of a pos table (one row per question, seed and iteration).

    Every seed starts from the same pi_ref, so ``pred_trajectory`` is the same for each; the
    one-step predictions follow each seed's own measured p_{n-1}. ``finite_group`` replaces the
    variant's (norm, std, eps) in the ``_G`` columns where the loop computes another advantage
    (TRL: std="trl", eps=1e-4 outside the root).
    """
    if pos.empty:
        raise InputError("the pos table is empty")
    frames = [_predict_seed(rows, variant, group_size, finite_group or {})
              for _, rows in pos.groupby("seed", sort=True)]
    return pd.concat(frames, ignore_index=True)[PREDICT_COLUMNS].sort_values(["seed", "iteration", "question"],
                                                                              ignore_index=True)


def _predict_seed(pos: pd.DataFrame, variant: VariantConfig, group_size: int, finite_group: dict) -> pd.DataFrame:
    wide = pos.pivot(index="iteration", columns="question", values="pos").sort_index()  # (N+1, Q)
    if wide.index[0] != 0 or wide.isna().any().any():
        raise InputError("the pos table needs every question at every iteration, starting at iteration 0")
    n_iters = int(wide.index[-1])
    measured = wide.to_numpy()
    p_ref = measured[0]
    kw = _theory_kwargs(variant)
    columns = {}
    for suffix, g, kw_g in (("", None, kw), ("_G", group_size, {**kw, **finite_group})):
        traj = theory.pos_recurrence(p_ref, n_iters, group_size=g, **kw_g)  # (N+1, Q)
        one_step = np.vstack([p_ref, theory.pos_step(measured[:-1], p_ref, group_size=g, **kw_g)])
        columns[f"pred_trajectory{suffix}"] = traj
        columns[f"pred_one_step{suffix}"] = one_step
    limit = theory.predicted_limit(p_ref, **kw)
    columns["pred_limit"] = np.broadcast_to(limit, measured.shape)
    columns["p_ref"] = np.broadcast_to(p_ref, measured.shape)

    long = pd.DataFrame({"iteration": np.repeat(wide.index.to_numpy(), wide.shape[1]),
                         "question": np.tile(wide.columns.to_numpy(), wide.shape[0]),
                         **{k: v.ravel() for k, v in columns.items()}})
    out = pos.merge(long, on=["question", "iteration"], how="left", validate="one_to_one")
    heldout = out["split"] != "train"
    out.loc[heldout, [c for c in columns if c != "p_ref"]] = np.nan
    return out


CURVE_GRID = np.linspace(0.002, 0.998, 400)  # p (= p_{n-1} for the step, = p_ref for the limit)


def curves_frame(variant: VariantConfig, group_size: int, finite_group: dict | None = None) -> pd.DataFrame:
    """The run's C3 as functions on a grid of p, for figures that draw theory beside measurements.

    ``step_gain`` = S(p)/beta, the log-odds gain of one step under kl=ref (C5); ``limit`` = C4's limit
    reached from p_ref = p; the ``_G`` columns use E1's S_G for the run's G.
    """
    kw = _theory_kwargs(variant)
    out = {"p": CURVE_GRID}
    for suffix, g, kw_g in (("", None, kw), ("_G", group_size, {**kw, **(finite_group or {})})):
        if g is None:
            w_plus, w_minus = theory.advantage_weights(CURVE_GRID, kw_g["norm"], kw_g["eps"])
        else:
            w_plus, w_minus = theory.finite_group_weights(CURVE_GRID, g, norm=kw_g["norm"], eps=kw_g["eps"],
                                                          std=kw_g["std"])
        out[f"step_gain{suffix}"] = (w_plus + w_minus) / variant.beta
        out[f"limit{suffix}"] = theory.predicted_limit(CURVE_GRID, group_size=g, **kw_g)
    return pd.DataFrame(out)[CURVE_COLUMNS]


# PolicySpec.advantage -> the finite_group_weights kwargs (norm, std, eps) of the advantage the policy's loop
# really computes ({}: the variant's own); the predict stage's _G columns and the claims' C3_G use it
ADVANTAGES = {
    "variant": lambda cfg: {},
    "trl": trl_settings.finite_group_advantage,
}


def finite_group_advantage(cfg) -> dict:
    """The (norm, std, eps) of the advantage ``cfg.policy``'s loop really computes, where not the variant's."""
    return ADVANTAGES[cfg.policy.spec.advantage](cfg)
