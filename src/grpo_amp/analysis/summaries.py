"""runs.csv's numbers: one run's measured and predicted PoS summarised per seed, then over seeds.

    numbers = summarise_run(pred, settings)   # {"gap_trajectory": m, "gap_trajectory_lo": lo, ...}
    mean, lo, hi = seed_interval([0.21, 0.19, 0.24])   # grpo_amp.analysis.stats

Every number of a run is computed for each seed on its own, then reported as the mean over seeds
with a 95% Student-t interval (the seeds are the repeats; a deterministic policy has one seed and
its interval is the point). Reads frames that the rules wrote; nothing here trains or samples.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from grpo_amp import estimators, theory
from grpo_amp.analysis.predict import batch_std
from grpo_amp.analysis.stats import seed_interval
from grpo_amp.schema import SUMMARY_NUMBERS

def with_interval(name: str, values) -> dict:
    mean, lo, hi = seed_interval(values)
    return {name: mean, f"{name}_lo": lo, f"{name}_hi": hi}


def train_rows(pred: pd.DataFrame) -> pd.DataFrame:
    return pred[pred["split"] == "train"]


def mean_gap(pred: pd.DataFrame, column: str) -> float:
    """mean |p_n - column| over train questions and iterations n >= 1 (one seed's frame)."""
    later = pred[(pred["split"] == "train") & (pred["iteration"] >= 1)]
    return float((later["pos"] - later[column]).abs().mean())


def mean_bias(pred: pd.DataFrame, column: str) -> float:
    """mean (p_n - column) over train questions and iterations n >= 1: the gap's sign (negative: below C3)."""
    later = pred[(pred["split"] == "train") & (pred["iteration"] >= 1)]
    return float((later["pos"] - later[column]).mean())


def heldout_gain(pred: pd.DataFrame) -> float:
    """Mean held-out PoS at the last iteration minus at iteration 0 (E3; NaN without held-out questions)."""
    held = pred[pred["split"] != "train"]
    if held.empty:
        return np.nan
    by_n = held.groupby("iteration")["pos"].mean()
    return float(by_n.loc[by_n.index.max()] - by_n.loc[0])


def effective_beta(pred: pd.DataFrame, settings: dict) -> tuple[float, float]:
    """E4: the beta that best explains one seed's trajectory under C3, and the fit's RMSE.

    C3 with the run's estimator (E6) in its population limit (pass@k: at the run's G; batch: sigma_b
    from the batch's p_ref): a constant factor c on A then reads as beta_eff = beta / c.
    """
    wide = train_rows(pred).pivot(index="iteration", columns="question", values="pos").sort_index()
    p_ref = wide.iloc[0].to_numpy()
    est = estimators.resolve(settings.get("estimator") or estimators.DEFAULT, settings["norm"], settings["std"],
                             settings["eps"])
    sd = batch_std(p_ref) if est.batch else None
    kw = est.population_kwargs(sd)
    if kw is None:
        kw = {**est.theory_kwargs(sd), "group_size": _group_size(settings)}
    return theory.fit_effective_beta(p_ref, wide.to_numpy(), kl=settings["kl"], beta_prev=settings["beta_prev"], **kw)


def shape_fit(pred: pd.DataFrame, settings: dict) -> theory.ShapeFit:
    """E6's shape test on one seed's train questions: every step n >= 1 against S_G(p_{n-1}) of the
    run's estimator and G (theory.shape_test); NaN for kl=both (no one-term step)."""
    if settings["kl"] not in ("ref", "mirror"):
        return theory.ShapeFit(np.nan, np.nan, 0)
    wide = train_rows(pred).pivot(index="iteration", columns="question", values="pos").sort_index().to_numpy()
    est = estimators.resolve(settings.get("estimator") or estimators.DEFAULT, settings["norm"], settings["std"],
                             settings["eps"])
    sd = float(np.sqrt(wide[:-1].mean(1, keepdims=True) * (1 - wide[:-1].mean(1, keepdims=True))).mean()) \
        if est.batch else None  # sigma_b: the batch's, averaged over the iterations
    p_ref = np.broadcast_to(wide[0], wide[1:].shape)
    G = _group_size(settings)
    if G is None and (est.pass_k is not None or est.dynamic_sampling):
        return theory.ShapeFit(np.nan, np.nan, 0)
    kw = est.theory_kwargs(sd) if G is not None else est.population_kwargs(sd)
    return theory.shape_test(wide[:-1], wide[1:], p_ref, kl=settings["kl"], group_size=G, **kw)


def _group_size(settings: dict) -> int | None:
    """The run's G (None where the settings have none: the population S is used)."""
    G = settings.get("group_size")
    return None if G is None or (isinstance(G, float) and np.isnan(G)) else int(G)


def summarise_seed(pred: pd.DataFrame, settings: dict) -> dict:
    """runs.csv's numbers for one seed of one run."""
    train = train_rows(pred)
    last = train[train["iteration"] == train["iteration"].max()]
    beta_eff, rmse = effective_beta(pred, settings)
    shape = shape_fit(pred, settings)
    return {"final_pos_mean": float(last["pos"].mean()), "pred_final_mean": float(last["pred_trajectory"].mean()),
            **{f"gap_{c}": mean_gap(pred, f"pred_{c}") for c in ("trajectory", "one_step", "trajectory_G",
                                                                 "one_step_G")},
            "bias": mean_bias(pred, "pred_trajectory"), "bias_G": mean_bias(pred, "pred_trajectory_G"),
            "heldout_gain": heldout_gain(pred), "beta_eff": beta_eff, "beta_eff_rmse": rmse,
            "shape_slope": shape.slope, "shape_r2": shape.r2}


def summarise_run(pred: pd.DataFrame, settings: dict) -> dict:
    """Every SUMMARY_NUMBERS column as its mean over seeds, with ``_lo``/``_hi``, and ``n_seeds``."""
    per_seed = pd.DataFrame([summarise_seed(rows, settings) for _, rows in pred.groupby("seed", sort=True)])
    out = {"n_seeds": len(per_seed)}
    for name in SUMMARY_NUMBERS:
        out.update(with_interval(name, per_seed[name]))
    return out


def per_seed_gaps(pred: pd.DataFrame, column: str = "pred_trajectory") -> pd.Series:
    """mean |p_n - column| of each seed (index: seed)."""
    return pred.groupby("seed", sort=True).apply(lambda rows: mean_gap(rows, column), include_groups=False)
