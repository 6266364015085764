"""E5's gap ladder: how far each rung sits from C3, and what each rung adds over the one it changes.

    table = ladder_table(runs, predictions)   # LADDER_COLUMNS, one row per (rung, run)

Rungs are the registry's policies with an E5 rung (R1 ... R6), the loss's own choices on top of R6
(its clipping and KL-estimator sweeps: ``clip0.2``, ``k1``, ``k3``) and the transformer family. For
every row: ``gap`` = mean |p_n - C3| (train questions, n >= 1) and ``gap_G`` the same against C3 with
E1's S_G, each the mean over seeds with its 95% interval; ``part`` = gap - parent's gap, with a
Welch interval over the two runs' seeds. The main chain R1 -> R2 -> R3 -> R4 (largest m) -> R6
telescopes: its parts add up to R6's gap minus R1's (which is ~0: R1 is C3). R5 (one group's own
maximiser) hangs off R6, as do the loss choices.

The transformer's chain: ``transformer control`` (m groups per question, inner steps until
the sampled objective stops improving) hangs off the table's R4 at the same G, m and variant (R2
where the scale has no such R4), so its part is the parametrisation (shared parameters across
questions, C2 drift, held-out questions moving), measured rather than asserted; ``transformer`` and
``trl`` hang off the control, so their part is sampling + optimisation on the transformer (one group,
M steps; TRL's loop too). Without a control at the scale they hang off R6.
Reads the predict files only (nothing here trains).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from grpo_amp import registry
from grpo_amp.analysis.stats import difference_interval, seed_interval
from grpo_amp.analysis.summaries import mean_bias, mean_gap, with_interval
from grpo_amp.schema import LADDER_COLUMNS

CAUSES = {
    "R1": "none: the exact population objective, maximised numerically (must be C3)",
    "R2": "finite group size G: E1's weights replace the population ones",
    "R3": "optimisation error: M Adam steps instead of the maximiser",
    "R4": "sampling error of the objective from m groups per question",
    "R6": "sampling error of one group per question (R4 at m = 1)",
    "R5": "fitting one group's noise: that group's own maximiser (M -> infinity)",
    "clip": "ratio clipping on top of R6",
    "k1": "k1 estimator as the KL loss term: a different objective (its gradient vanishes at pi = pi_{n-1}), not only noise",
    "k3": "k3 estimator as the KL loss term: a different objective (its gradient is that of KL(pi_ref || pi) at pi = pi_{n-1})",
    "transformer": "parametrisation and sampling + optimisation together: a transformer shares parameters across "
                   "questions (its own G, M, lr), beside the table's R6 (no transformer control at this scale)",
    "transformer control": "parametrisation: the transformer as close to each iteration's maximiser as it allows "
                           "(m groups per question, inner steps until the sampled objective stops improving) beside "
                           "the table's rung at the same G, m and beta: shared parameters across questions, C2 drift, "
                           "held-out questions moving (plus what the control leaves of sampling and optimisation error, and the "
                           "two tasks' different questions and p_ref)",
    "after control": "sampling + optimisation on the transformer: one group per question and M inner steps instead "
                     "of the control's m groups and steps until the objective stops improving (same loss, G, lr, beta)",
    "trl after control": "sampling + optimisation on the transformer, and TRL's own loop and loss (grpo_amp.trl_family.settings): "
                         "one group per question and TRL's steps instead of the control's m groups and steps until "
                         "the objective stops improving (same checkpoint, G, beta)",
}
CONTROL = "transformer_control"  # the registry's transformer control (its rung label: "transformer control")


def _gaps(pred: pd.DataFrame, column: str) -> np.ndarray:
    return np.array([mean_gap(g, column) for _, g in pred.groupby("seed", sort=True)])


def _rows_of(runs: pd.DataFrame) -> list[dict]:
    """(rung, policy, run, variant, chain position) for every ladder run in runs.csv."""
    out = []
    for r in runs.itertuples(index=False):
        spec = registry.POLICIES.get(r.policy)
        if spec is None:
            continue
        if spec.rung == "R4" and r.sweep == "variant":  # m = 1: R6 draw for draw
            out.append(dict(rung="R4", policy=r.policy, run=r.run, variant=r.variant, value=r.groups_per_question,
                            group_size=r.group_size))
        elif spec.rung is not None and r.sweep == "variant":
            out.append(dict(rung=spec.rung, policy=r.policy, run=r.run, variant=r.variant, value=np.nan,
                            group_size=r.group_size))
        elif spec.rung == "R3" and r.sweep == "inner_steps":
            out.append(dict(rung="R3", policy=r.policy, run=r.run, variant=r.variant, value=r.inner_steps))
        elif spec.rung == "R4" and r.sweep == "groups_per_question":
            out.append(dict(rung="R4", policy=r.policy, run=r.run, variant=r.variant, value=r.groups_per_question,
                            group_size=r.group_size))
        elif spec.rung == "R6" and r.sweep == "clip_eps":
            out.append(dict(rung=f"clip{r.clip_eps:g}", policy=r.policy, run=r.run, variant=r.variant, value=np.nan))
        elif spec.rung == "R6" and r.sweep == "kl_estimator":
            out.append(dict(rung=str(r.kl_estimator), policy=r.policy, run=r.run, variant=r.variant, value=np.nan))
        elif spec.family == "transformer" and r.sweep == "variant":
            out.append(dict(rung=r.policy.replace("_", " "), policy=r.policy, run=r.run, variant=r.variant,
                            value=np.nan, group_size=r.group_size, groups_per_question=r.groups_per_question))
    return out


def _parent(row: dict, by_rung: dict[tuple[str, str], dict]) -> dict | None:
    """The row this one changes (None for R1, the root)."""
    v, rung = row["variant"], row["rung"]
    plain = lambda r: by_rung.get((r, v))  # noqa: E731
    if rung == "R1":
        return None
    if rung == "R2":
        return plain("R1")
    if rung == "R3" and np.isnan(row["value"]):
        return plain("R2")
    if rung == "R3":
        return plain("R3")  # an M-sweep point changes the plain R3 run's M
    if rung == "R4":
        return plain("R3")
    if rung == "R6":
        r4 = [r for (name, var), r in by_rung.items() if name.startswith("R4@") and var == v and r["value"] > 1]
        return max(r4, key=lambda r: r["value"]) if r4 else plain("R3")
    if row["policy"] == CONTROL:
        # the table at the same G and m (R4), else the exact finite-G maximiser (R2) the control approaches,
        # else R6; only at the control's own G (none: the row is a root, its part its gap; see _cause)
        for candidate in (by_rung.get((f"R4@{row['groups_per_question']:g}", v)), plain("R2"), plain("R6")):
            if candidate is not None and candidate.get("group_size") == row["group_size"]:
                return candidate
        return None
    if registry.POLICIES[row["policy"]].family == "transformer":
        return plain(CONTROL.replace("_", " ")) or plain("R6")
    return plain("R6")  # R5 and the loss choices change R6


def _label(row: dict) -> str:
    """R3, or R3 (M = 32) for a point of a rung's own sweep."""
    if np.isnan(row["value"]):
        return row["rung"]
    return f"{row['rung']} ({'M' if row['rung'] == 'R3' else 'm'} = {row['value']:g})"


def _cause(row: dict, parent: dict | None) -> str:
    rung = row["rung"]
    if rung.startswith("clip"):
        return CAUSES["clip"]
    if row["policy"] == CONTROL:
        if parent is None:
            return (f"no tabular rung at the control's G = {row['group_size']:g}: the control's own gap, "
                    "not a part (run the table at that G for the parametrisation part)")
        return CAUSES["transformer control"]
    if registry.POLICIES[row["policy"]].family == "transformer":
        if parent is not None and parent["policy"] == CONTROL:
            return CAUSES["trl after control" if row["policy"] == "trl" else "after control"]
        return CAUSES["transformer"]
    return CAUSES.get(rung, "")


def ladder_table(runs: pd.DataFrame, predictions: dict[tuple[str, str], pd.DataFrame]) -> pd.DataFrame:
    rows = [r for r in _rows_of(runs) if (r["policy"], r["run"]) in predictions]
    for r in rows:
        pred = predictions[(r["policy"], r["run"])]
        r["gaps"], r["gaps_G"] = _gaps(pred, "pred_trajectory"), _gaps(pred, "pred_trajectory_G")
        r["bias"], r["bias_G"] = (np.array([mean_bias(g, c) for _, g in pred.groupby("seed", sort=True)])
                                  for c in ("pred_trajectory", "pred_trajectory_G"))
    by_rung = {}
    for r in rows:
        key = r["rung"] if np.isnan(r["value"]) else f"{r['rung']}@{r['value']:g}"
        by_rung.setdefault((key, r["variant"]), r)
    out = []
    for r in rows:
        parent = _parent(r, by_rung)
        gap, gap_lo, gap_hi = seed_interval(r["gaps"])
        gap_g, gap_g_lo, gap_g_hi = seed_interval(r["gaps_G"])
        part = difference_interval(parent["gaps"], r["gaps"]) if parent is not None else (gap, gap_lo, gap_hi)
        out.append({"rung": _label(r), "policy": r["policy"], "run": r["run"], "n_seeds": len(r["gaps"]),
                    "gap": gap, "gap_lo": gap_lo, "gap_hi": gap_hi,
                    "gap_G": gap_g, "gap_G_lo": gap_g_lo, "gap_G_hi": gap_g_hi,
                    **with_interval("bias", r["bias"]), **with_interval("bias_G", r["bias_G"]),
                    "parent": "" if parent is None else _label(parent),
                    "part": part[0], "part_lo": part[1], "part_hi": part[2],
                    "cause": _cause(r, parent)})
    return pd.DataFrame(out, columns=LADDER_COLUMNS)
