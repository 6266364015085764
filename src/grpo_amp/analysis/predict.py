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
from grpo_amp.estimators import Estimator, resolve
from grpo_amp.io import InputError
from grpo_amp.schema import CURVE_COLUMNS, PREDICT_COLUMNS
from grpo_amp.trl_family import settings as trl_settings


def _estimator(variant: VariantConfig, estimator: Estimator | None) -> Estimator:
    return estimator or resolve("grpo", variant.norm.value, variant.std.value, variant.eps)


def batch_std(p) -> float:
    """sigma_b of TRL's "batch" estimator in expectation: sqrt(pbar (1 - pbar)) over the batch's
    questions (docs/theory.md E6; grpo.rungs.batch_std is the same for R1/R2)."""
    pbar = float(np.mean(p))
    return float(np.sqrt(pbar * (1.0 - pbar)))


def estimator_kwargs(variant: VariantConfig, estimator: Estimator | None, group_size: int,
                     finite_group: dict | None = None, p_batch=None, population: bool = False) -> dict:
    """theory keywords (kl, beta, ..., the estimator's, group_size) for the run's G; ``population``: its
    G -> infinity limit (pass@k has none: its finite-G form). ``p_batch``: the PoS that set sigma_b (batch)."""
    est = _estimator(variant, estimator)
    sd = batch_std(p_batch) if est.batch else None
    kw = variant.penalty_kwargs()
    if population and est.population_kwargs(sd) is not None:
        return {**kw, **est.population_kwargs(sd), "group_size": None}
    return {**kw, **est.theory_kwargs(sd), **(finite_group or {}), "group_size": group_size}


def predict_frame(pos: pd.DataFrame, variant: VariantConfig, group_size: int,
                  finite_group: dict | None = None, estimator: Estimator | None = None) -> pd.DataFrame:
    """PREDICT_COLUMNS for every row of a pos table (one row per question, seed and iteration).

    Every seed starts from the same pi_ref, so ``pred_trajectory`` is the same for each; the
    one-step predictions follow each seed's own measured p_{n-1}. ``finite_group`` replaces the
    variant's (norm, std, eps) in the ``_G`` columns where the loop computes another advantage
    (TRL: std="trl", eps=1e-4 outside the root). ``estimator`` (docs/theory.md E6; default: the
    variant's own) is the advantage the trainer computed (grpo_amp.estimators, the same row).
    """
    if pos.empty:
        raise InputError("the pos table is empty")
    estimator = _estimator(variant, estimator)
    frames = [_predict_seed(rows, variant, group_size, finite_group or {}, estimator)
              for _, rows in pos.groupby("seed", sort=True)]
    return pd.concat(frames, ignore_index=True)[PREDICT_COLUMNS].sort_values(["seed", "iteration", "question"],
                                                                              ignore_index=True)


def _predict_seed(pos: pd.DataFrame, variant: VariantConfig, group_size: int, finite_group: dict,
                  estimator: Estimator) -> pd.DataFrame:
    wide = pos.pivot(index="iteration", columns="question", values="pos").sort_index()  # (N+1, Q)
    if wide.index[0] != 0 or wide.isna().any().any():
        raise InputError("the pos table needs every question at every iteration, starting at iteration 0")
    n_iters = int(wide.index[-1])
    measured = wide.to_numpy()
    p_ref = measured[0]
    columns = {}
    if estimator.batch:  # sigma_b couples the questions: it follows the (trained) batch's mean PoS
        train = (pos.drop_duplicates("question").set_index("question")["split"]
                 .reindex(wide.columns).to_numpy() == "train")
        for suffix, pop in (("", True), ("_G", False)):
            kw_at = lambda p: estimator_kwargs(variant, estimator, group_size, finite_group,  # noqa: E731
                                               p[..., train], population=pop)
            traj = [p_ref]
            for _ in range(n_iters):
                traj.append(theory.pos_step(traj[-1], p_ref, **kw_at(traj[-1])))
            columns[f"pred_trajectory{suffix}"] = np.vstack(traj)
            columns[f"pred_one_step{suffix}"] = np.vstack(
                [p_ref, *(theory.pos_step(prev, p_ref, **kw_at(prev)) for prev in measured[:-1])])
        kw = estimator_kwargs(variant, estimator, group_size, p_batch=p_ref[train], population=True)
    else:
        for suffix, pop in (("", True), ("_G", False)):
            kw_g = estimator_kwargs(variant, estimator, group_size, finite_group, population=pop)
            traj = theory.pos_recurrence(p_ref, n_iters, **kw_g)  # (N+1, Q)
            one_step = np.vstack([p_ref, theory.pos_step(measured[:-1], p_ref, **kw_g)])
            columns[f"pred_trajectory{suffix}"] = traj
            columns[f"pred_one_step{suffix}"] = one_step
        kw = estimator_kwargs(variant, estimator, group_size, population=True)
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


def curves_frame(variant: VariantConfig, group_size: int, finite_group: dict | None = None,
                 estimator: Estimator | None = None) -> pd.DataFrame:
    """The run's C3 as functions on a grid of p, for figures that draw theory beside measurements.

    ``step_gain`` = S(p)/beta, the log-odds gain of one step under kl=ref (C5); ``limit`` = C4's limit
    reached from p_ref = p; the ``_G`` columns use E1/E6's S_G for the run's G and estimator (batch:
    at sigma_b = 1/2, a mixed batch with mean PoS 1/2).
    """
    out = {"p": CURVE_GRID}
    for suffix, pop in (("", True), ("_G", False)):
        kw_g = estimator_kwargs(variant, estimator, group_size, finite_group, p_batch=0.5, population=pop)
        g = kw_g["group_size"]
        w_kw = {k: v for k, v in kw_g.items() if k not in ("kl", "beta", "beta_prev", "group_size")}
        if g is None:
            w_plus, w_minus = theory.advantage_weights(CURVE_GRID, w_kw["norm"], w_kw["eps"],
                                                       eps_inside=w_kw["eps_inside"], batch_std=w_kw["batch_std"])
        else:
            w_plus, w_minus = theory.finite_group_weights(CURVE_GRID, g, **w_kw)
        out[f"step_gain{suffix}"] = (w_plus + w_minus) / variant.beta
        out[f"limit{suffix}"] = theory.predicted_limit(CURVE_GRID, **kw_g)
    return pd.DataFrame(out)[CURVE_COLUMNS]


# PolicySpec.advantage -> the finite_group_weights kwargs (norm, std, eps, eps_inside, ...) of the advantage the policy's loop
# really computes ({}: the variant's own); the predict stage's _G columns and the claims' C3_G use it
ADVANTAGES = {
    "variant": lambda cfg: {},
    "trl": trl_settings.finite_group_advantage,
}


def finite_group_advantage(cfg) -> dict:
    """The (norm, std, eps) of the advantage ``cfg.policy``'s loop really computes, where not the variant's."""
    return ADVANTAGES[cfg.policy.spec.advantage](cfg)
