"""The audited run against the theory (docs/theory.md): C3 from the measured p_ref, E4, the shape test.

    per_question, overall, columns = analyse(pos, steps_per_iteration, theory_kw, group_size)

A checkpoint interval is not one theory iteration, so three views, all from the measured p_ref:

- nominal: C3 with the run's beta, n_j = step_j / steps_per_iteration theory iterations at checkpoint j
  (TRL: one generation round = mu optimiser steps), E1's S_G with the run's G and estimator;
- E4: the (beta, m) whose C3 trajectory best fits the checkpoints, m theory iterations per checkpoint
  interval (n_j = m step_j / interval); overall (least squares over questions) and per question;
  beside it theory.fit_effective_beta with one iteration per checkpoint (the study's E4);
- shape: the change in logit p over an interval against S_G(p_prev) (C3's kl=mirror step is exactly
  logit p_n - logit p_{n-1} = S(p_{n-1})/beta): OLS slope, R^2 and residual / Monte Carlo noise.

Where does it fit? Each fit's RMSE is put beside the Monte Carlo noise of the same numbers (NOISE: the
expected RMSE of a perfect prediction from a measured p_ref, ~ sqrt(se_j^2 + se_0^2)): "fits" at most
FIT_RATIO x noise, "does not fit" above; "no movement" where the PoS did not move beyond the noise
(a constant p_ref fits too: the data cannot tell C3 from nothing).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from grpo_amp import theory
from grpo_amp.io import InputError

FIT_RATIO = 1.5                                   # RMSE / MC noise at most this: within sampling noise
BETA_GRID = np.exp(np.linspace(np.log(1e-3), np.log(1e3), 121))  # E4's grid, as theory.fit_effective_beta's


def smoothed(successes, n) -> np.ndarray:
    """(k + 1/2) / (n + 1): a PoS whose logit is finite at 0 and n successes (Haldane-Anscombe)."""
    return (np.asarray(successes, float) + 0.5) / (np.asarray(n, float) + 1.0)


# the advantage's keywords of theory (grpo_amp.estimators.Estimator.theory_kwargs); the rest of theory_kw is the penalty
ESTIMATOR_KEYS = ("norm", "eps", "std", "eps_inside", "dynamic_sampling", "batch_std", "pass_k")


def _estimator_kw(theory_kw: dict) -> dict:
    return {k: theory_kw[k] for k in ESTIMATOR_KEYS if k in theory_kw}


def weight_sum(p, theory_kw: dict, group_size: int | None) -> np.ndarray:
    """S_G(p) = w+_G + w-_G with the run's estimator (population S where group_size is None)."""
    kw = _estimator_kw(theory_kw)
    if group_size is None:
        w_plus, w_minus = theory.advantage_weights(p, kw["norm"], kw["eps"], eps_inside=kw.get("eps_inside", True),
                                                   batch_std=kw.get("batch_std"))
    else:
        w_plus, w_minus = theory.finite_group_weights(p, group_size, **kw)
    return w_plus + w_minus


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float, float]:
    """slope, intercept, R^2 and the slope's 95% interval of y = a + b x (NaN with fewer than 3 points)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0:
        return (np.nan,) * 5
    fit = stats.linregress(x, y)
    half = stats.t.ppf(0.975, len(x) - 2) * fit.stderr
    return float(fit.slope), float(fit.intercept), float(fit.rvalue ** 2), float(fit.slope - half), float(fit.slope + half)


def _verdict(rmse: float, rmse_const: float, noise: float) -> str:
    if not np.isfinite(rmse):
        return "n/a"
    if rmse_const <= FIT_RATIO * noise:
        return "no movement"
    return "fits" if rmse <= FIT_RATIO * noise else "does not fit"


def iterations_at(steps: np.ndarray, m: int) -> np.ndarray:
    """Theory iteration of each point with m iterations per checkpoint interval (the smallest step gap)."""
    gaps = np.diff(steps)
    interval = gaps.min() if len(gaps) else 1
    return np.rint(m * steps / interval).astype(int)


def analyse(pos: pd.DataFrame, steps_per_iteration: int, theory_kw: dict, group_size: int | None,
            max_m: int = 32) -> tuple[pd.DataFrame, dict, dict]:
    """Per question and overall, against C3; ``pos`` is the audit's pos table (train questions are fitted).

    theory_kw: kl, beta, beta_prev and the estimator's keywords (ESTIMATOR_KEYS: the run's variant and
    ``estimator=``, e.g. trl_default for a TRL run). Returns
    (per-question table, overall dict, prediction arrays (J+1, Q) by name for the predict table).
    """
    train = pos[pos["split"] == "train"]
    wide = train.pivot(index="iteration", columns="question", values="successes").sort_index()
    steps = train.groupby("iteration")["step"].first().sort_index().to_numpy()
    n = int(train["n_samples"].iloc[0])
    k = wide.to_numpy(float)                     # (J+1, Q)
    p = k / n                                     # measured PoS
    p_s = smoothed(k, n)                          # for logits and noise
    p_ref = p[0]
    J = len(steps) - 1
    if J < 1:
        raise InputError("the audit needs the base and at least one checkpoint")
    se2 = p_s * (1 - p_s) / n                     # (J+1, Q): MC variance of each measured PoS
    noise_q = np.sqrt(np.mean(se2[1:] + se2[0], axis=0))  # per question: expected RMSE of a perfect prediction
    kl, beta = theory_kw["kl"], float(theory_kw["beta"])
    rec = dict(kl=kl, beta_prev=theory_kw["beta_prev"], group_size=group_size, **_estimator_kw(theory_kw))
    # C3 needs p_ref in (0, 1) to tilt anything: 0 or n successes of n pin the prediction (theory's rule)

    # ---- nominal: the run's beta, n_j = step_j / steps_per_iteration
    n_nom = np.rint(steps / steps_per_iteration).astype(int)
    traj = theory.pos_recurrence(p_ref, int(n_nom[-1]), beta=beta, **rec)  # (n_J + 1, Q)
    pred_nom = traj[n_nom]

    # ---- E4 with m iterations per interval: one recurrence over the beta grid, read at each m's rows
    n_max = int(iterations_at(steps, max_m)[-1])
    grid = theory.pos_recurrence(p_ref, n_max, beta=BETA_GRID[:, None], **rec)  # (n_max + 1, B, Q)
    sse = np.empty((max_m, len(BETA_GRID), p.shape[1]))                          # (M, B, Q)
    for m in range(1, max_m + 1):
        rows = iterations_at(steps, m)[1:]
        sse[m - 1] = ((grid[rows] - p[1:, None, :]) ** 2).sum(axis=0)
    total = sse.sum(axis=2)                                                      # (M, B)
    m_i, b_i = np.unravel_index(np.argmin(total), total.shape)
    m_fit = m_i + 1
    beta_fit = _refine_beta(p_ref, p[1:], iterations_at(steps, m_fit)[1:], BETA_GRID, b_i, rec)
    pred_fit = theory.pos_recurrence(p_ref, int(iterations_at(steps, m_fit)[-1]), beta=beta_fit, **rec)[
        iterations_at(steps, m_fit)]
    flat = sse.reshape(-1, p.shape[1])                                           # (M*B, Q)
    best_q = np.argmin(flat, axis=0)
    m_q = best_q // len(BETA_GRID) + 1
    beta_q, sse_q = _refine_per_question(p_ref, p[1:], steps, m_q, best_q % len(BETA_GRID), rec)
    rmse_q_fit = np.sqrt(sse_q / J)
    beta_one, rmse_one = theory.fit_effective_beta(p_ref, p, **{k_: v for k_, v in rec.items()})  # one iter per ckpt

    # ---- shape: change in logit p over an interval against S_G(p_prev)
    x = weight_sum(p_s[:-1], theory_kw, group_size)                               # (J, Q)
    y = theory.logit(p_s[1:]) - theory.logit(p_s[:-1])                            # (J, Q)
    y_noise = 1 / (n * p_s[1:] * (1 - p_s[1:])) + 1 / (n * p_s[:-1] * (1 - p_s[:-1]))  # delta method: var of y
    shape_q = [_ols(x[:, q], y[:, q]) for q in range(p.shape[1])]
    slope, intercept, r2, slope_lo, slope_hi = _ols(x.ravel(), y.ravel())
    resid = y - (intercept + slope * x) if np.isfinite(slope) else np.full_like(y, np.nan)
    y_ref = theory.logit(p_s[1:]) - theory.logit(p_s[0])                          # kl=ref's form: x_n - x_ref
    slope_ref, _, r2_ref, _, _ = _ols(x.ravel(), y_ref.ravel())

    def rmse(pred, axis=None):
        return np.sqrt(np.mean((pred[1:] - p[1:]) ** 2, axis=axis))

    const = np.broadcast_to(p_ref, p.shape)
    per_q = pd.DataFrame({
        "question": wide.columns.to_numpy(), "p_ref": p_ref, "p_final": p[-1],
        "pred_nominal_final": pred_nom[-1], "pred_fit_final": pred_fit[-1],
        "rmse_nominal": rmse(pred_nom, 0), "rmse_fit_overall": rmse(pred_fit, 0),
        "beta_fit": beta_q, "iterations_per_interval_fit": m_q, "rmse_fit": rmse_q_fit,
        "rmse_constant": rmse(const, 0), "mc_noise": noise_q,
        "shape_slope": [s[0] for s in shape_q], "shape_intercept": [s[1] for s in shape_q],
        "shape_r2": [s[2] for s in shape_q]})
    per_q["verdict_nominal"] = [_verdict(a, c, z) for a, c, z in zip(per_q["rmse_nominal"], per_q["rmse_constant"], noise_q)]
    per_q["verdict_fit"] = [_verdict(a, c, z) for a, c, z in zip(per_q["rmse_fit"], per_q["rmse_constant"], noise_q)]
    noise = float(np.sqrt(np.mean(se2[1:] + se2[0])))
    overall = {
        "n_questions": int(p.shape[1]), "n_checkpoints": int(J), "n_samples": n,
        "steps": " ".join(str(int(s)) for s in steps), "steps_per_iteration": int(steps_per_iteration),
        "beta": beta, "kl": kl, "group_size": group_size if group_size is not None else -1,
        "pos_mean_ref": float(p_ref.mean()), "pos_mean_final": float(p[-1].mean()),
        "pred_nominal_mean_final": float(pred_nom[-1].mean()), "pred_fit_mean_final": float(pred_fit[-1].mean()),
        "mc_noise": noise, "rmse_constant": float(rmse(const)),
        "rmse_nominal": float(rmse(pred_nom)), "verdict_nominal": _verdict(float(rmse(pred_nom)), float(rmse(const)), noise),
        "beta_fit": float(beta_fit), "iterations_per_interval_fit": int(m_fit), "rmse_fit": float(rmse(pred_fit)),
        "verdict_fit": _verdict(float(rmse(pred_fit)), float(rmse(const)), noise),
        "beta_eff_one_iteration_per_checkpoint": float(beta_one), "rmse_one_iteration_per_checkpoint": float(rmse_one),
        "shape_slope": slope, "shape_slope_lo": slope_lo, "shape_slope_hi": slope_hi, "shape_intercept": intercept,
        "shape_r2": r2, "shape_resid_over_noise": float(np.mean(resid ** 2) / np.mean(y_noise)),
        "shape_ref_slope": slope_ref, "shape_ref_r2": r2_ref,
        "share_questions_fit": float(np.mean(per_q["verdict_fit"] == "fits")),
        "share_questions_nominal_fit": float(np.mean(per_q["verdict_nominal"] == "fits")),
    }
    columns = {"pred_nominal": pred_nom, "pred_fit": pred_fit,
               "theory_iteration_nominal": np.broadcast_to(n_nom[:, None], p.shape),
               "theory_iteration_fit": np.broadcast_to(iterations_at(steps, m_fit)[:, None], p.shape)}
    return per_q, overall, {"questions": wide.columns.to_numpy(), "iterations": wide.index.to_numpy(), **columns}


def _refine_per_question(p_ref, measured, steps, m_q, b_q, rec, iters: int = 60):
    """Golden-section search in log beta per question (all at once) inside its best grid cell, m fixed."""
    Q = len(p_ref)
    rows = np.stack([iterations_at(steps, int(m))[1:] for m in m_q], axis=1)   # (J, Q)
    n_max = int(rows.max())

    def sse(log_beta):                                                          # (Q,)
        traj = theory.pos_recurrence(p_ref, n_max, beta=np.exp(log_beta), **rec)  # (n_max + 1, Q)
        return ((traj[rows, np.arange(Q)] - measured) ** 2).sum(axis=0)

    log_grid = np.log(BETA_GRID)
    a, b = log_grid[np.maximum(b_q - 1, 0)], log_grid[np.minimum(b_q + 1, len(log_grid) - 1)]
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = sse(c), sse(d)
    for _ in range(iters):
        left = fc < fd                      # the minimum lies in [a, d]: shrink from the right
        a, b = np.where(left, a, c), np.where(left, d, b)
        c_new, d_new = b - g * (b - a), a + g * (b - a)
        c, d = c_new, d_new
        fc, fd = sse(c), sse(d)
    x = np.where(fc < fd, c, d)
    at_grid = sse(log_grid[b_q])
    best = np.minimum(np.minimum(fc, fd), at_grid)
    return np.where(at_grid <= np.minimum(fc, fd), BETA_GRID[b_q], np.exp(x)), best


def _refine_beta(p_ref, measured, rows, grid, b_i, rec) -> float:
    """Brent's method in log beta inside the best grid cell, as theory.fit_effective_beta does."""
    from scipy import optimize

    def sse(log_beta):
        pred = theory.pos_recurrence(p_ref, int(rows[-1]), beta=float(np.exp(log_beta)), **rec)[rows]
        return float(((pred - measured) ** 2).sum())

    lo, hi = np.log(grid[max(b_i - 1, 0)]), np.log(grid[min(b_i + 1, len(grid) - 1)])
    res = optimize.minimize_scalar(sse, bounds=(lo, hi), method="bounded", options={"xatol": 1e-8})
    return float(np.exp(res.x)) if res.fun <= sse(np.log(grid[b_i])) else float(grid[b_i])

