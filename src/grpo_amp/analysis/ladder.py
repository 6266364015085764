"""E5's gap ladder: how far each rung sits from C3, and what each rung adds over the one it changes.

    table = ladder_table(runs, predictions)   # LADDER_COLUMNS, one row per (rung, run)

Rungs are the registry's policies with an E5 rung (R1 ... R6), the loss's own choices on top of R6
(its clipping and KL-estimator sweeps: ``clip0.2``, ``k1``, ``k3``) and the transformer family. For
every row: ``gap`` = mean |p_n - C3| (train questions, n >= 1) and ``gap_G`` the same against C3 with
E1's S_G, each the mean over seeds with its 95% interval; ``part`` = gap - parent's gap, with a
Welch interval over the two runs' seeds. The main chain R1 -> R2 -> R3 -> R4 (largest m) -> R6
telescopes: its parts add up to R6's gap minus R1's (which is ~0: R1 is C3). R5 (one group's own
maximiser) hangs off R6, as do the loss choices.

Every row says which ``questions`` it was measured on (``QUESTIONS``: the table's drawn questions, or the
transformer's modarith questions), and a row's parent is always on the same questions: a part never
mixes two tasks' p_ref spreads. The transformer's chain (issues 10, 20), on its own questions:
``transformer r1`` (the exact population objective maximised over the transformer's parameters,
grpo.lm_rungs) is its root, its gap to C3 the parametrisation part with no sampling in it;
``transformer r2`` (E1's finite-G weights) changes R1; ``transformer control`` (m groups, inner steps
until the sampled objective stops improving, the practice loss) changes R2; ``transformer`` and
``trl`` change the control (one group, M steps; TRL's loop too). A scale without a rung falls back
to the nearest one above it on the same questions, or the row is a root (its part is its gap).
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
    "transformer r1": "parametrisation, nothing else: the exact population objective on every answer-shaped output, "
                      "maximised over the transformer's parameters by L-BFGS (grpo.lm_rungs; the tolerance it reached "
                      "is in the run's metrics.csv), against C3 on the same questions",
    "transformer r2": "finite group size G on the transformer: E1's weights replace the population ones in the exact "
                      "objective, both maximised over the transformer's parameters",
    "transformer": "parametrisation and sampling + optimisation together: the transformer's own gap (no exact "
                   "transformer rung or control at this scale on its questions)",
    "transformer control": "sampling (m groups per question) and the practice loss (per-token ratio, full-vocabulary "
                           "per-token KL) with Adam steps until the sampled objective stops improving, instead of the "
                           "exact finite-G objective's maximiser over the same parameters",
    "transformer control root": "the control's own gap: parametrisation, sampling and optimisation together (no exact "
                                "transformer rung at this scale)",
    "after control": "sampling + optimisation on the transformer: one group per question and M inner steps instead "
                     "of the control's m groups and steps until the objective stops improving (same loss, G, lr, beta)",
    "trl after control": "sampling + optimisation on the transformer, and TRL's own loop and loss (grpo_amp.trl_family.settings): "
                         "one group per question and TRL's steps instead of the control's m groups and steps until "
                         "the objective stops improving (same checkpoint, G, beta)",
}
CONTROL = "transformer_control"  # the registry's transformer control (its rung label: "transformer control")
# which question set a family's rows are measured on (its default task: the table's drawn questions, modarith)
# the twin (issue 20) is a table on the transformer's questions: its rungs form their own chain beside the transformer's
QUESTIONS = {"tabular": "tabular", "transformer": "modarith", "twin": "twin"}
# each transformer rung's counterpart on the twin (same questions, p_ref, G, beta; no shared parameters):
# the row's ``vs_twin`` is its gap minus that rung's, what the shared parameters add
TWIN_OF = {"transformer r1": "R1", "transformer r2": "R2", "transformer control": "R4", "transformer": "R6", "trl": "R6"}
# the transformer's chain on its own questions, root first: each row's parent is the nearest one above it that ran
TRANSFORMER_CHAIN = ("transformer r1", "transformer r2", "transformer control")


def _gaps(pred: pd.DataFrame, column: str) -> np.ndarray:
    return np.array([mean_gap(g, column) for _, g in pred.groupby("seed", sort=True)])


def _rows_of(runs: pd.DataFrame) -> list[dict]:
    """(rung, policy, run, variant, chain position) for every ladder run in runs.csv."""
    out = []
    for r in runs.itertuples(index=False):
        spec = registry.POLICIES.get(r.policy)
        if spec is None or spec.control_of is not None:
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
    qs = row["questions"]
    plain = lambda r: by_rung.get((qs, r, v))  # noqa: E731
    if rung == "R1":
        return None
    if rung == "R2":
        return plain("R1")
    if rung == "R3" and np.isnan(row["value"]):
        return plain("R2")
    if rung == "R3":
        return plain("R3")  # an M-sweep point changes the plain R3 run's M
    if rung == "R4":
        return plain("R3") or plain("R2")  # the twin has no R3
    if rung == "R6":
        r4 = [r for (q, name, var), r in by_rung.items()
              if q == qs and name.startswith("R4@") and var == v and r["value"] > 1]
        return max(r4, key=lambda r: r["value"]) if r4 else plain("R3")
    if registry.POLICIES[row["policy"]].family == "transformer":
        # on the transformer's own questions only: the nearest rung above it in TRANSFORMER_CHAIN that ran
        # (transformer and trl sit below the whole chain); R2 and the control at their own G only
        above = TRANSFORMER_CHAIN[:TRANSFORMER_CHAIN.index(rung)] if rung in TRANSFORMER_CHAIN else TRANSFORMER_CHAIN
        for name in reversed(above):
            candidate = plain(name)
            if candidate is not None and (name == "transformer r1" or rung not in TRANSFORMER_CHAIN[1:]
                                          or candidate.get("group_size") == row.get("group_size")):
                return candidate
        return None
    return plain("R6")  # R5 and the loss choices change R6


def _label(row: dict) -> str:
    """R3, or R3 (M = 32) for a point of a rung's own sweep; "twin R2" on the twin's questions."""
    prefix = "twin " if row["questions"] == "twin" else ""
    if np.isnan(row["value"]):
        return prefix + row["rung"]
    return f"{prefix}{row['rung']} ({'M' if row['rung'] == 'R3' else 'm'} = {row['value']:g})"


def _twin_of(row: dict, by_rung: dict) -> dict | None:
    """The twin's rung that a transformer row is compared with on identical questions (R4 at the control's m)."""
    name = TWIN_OF.get(row["rung"]) if row["questions"] == "modarith" else None
    if name == "R4":
        name = f"R4@{row['groups_per_question']:g}"
    twin = by_rung.get(("twin", name, row["variant"])) if name else None
    return twin if twin is not None and (name == "R1" or twin.get("group_size") == row.get("group_size")) else None


def _cause(row: dict, parent: dict | None) -> str:
    rung = row["rung"]
    if rung.startswith("clip"):
        return CAUSES["clip"]
    if rung == "R4" and parent is not None and parent["rung"] == "R2":
        return "optimisation error (M Adam steps) and sampling error of m groups per question together (no R3 here)"
    if registry.POLICIES[row["policy"]].family == "transformer":
        if rung in ("transformer r1", "transformer r2"):
            if rung == "transformer r2" and parent is None:
                return "parametrisation at finite G: no transformer r1 at this scale, the gap_G column is the part"
            return CAUSES[rung]
        if row["policy"] == CONTROL:
            return CAUSES["transformer control"] if parent is not None else CAUSES["transformer control root"]
        if parent is not None and parent["policy"] == CONTROL:
            return CAUSES["trl after control" if row["policy"] == "trl" else "after control"]
        if parent is not None:
            return f"sampling + optimisation (and the practice loss) on the transformer, below {parent['rung']}"
        return CAUSES["transformer"]
    return CAUSES.get(rung, "")


def ladder_table(runs: pd.DataFrame, predictions: dict[tuple[str, str], pd.DataFrame]) -> pd.DataFrame:
    rows = [r for r in _rows_of(runs) if (r["policy"], r["run"]) in predictions]
    for r in rows:
        r["questions"] = QUESTIONS[registry.family_of(r["policy"])]
        pred = predictions[(r["policy"], r["run"])]
        r["gaps"], r["gaps_G"] = _gaps(pred, "pred_trajectory"), _gaps(pred, "pred_trajectory_G")
        r["bias"], r["bias_G"] = (np.array([mean_bias(g, c) for _, g in pred.groupby("seed", sort=True)])
                                  for c in ("pred_trajectory", "pred_trajectory_G"))
    by_rung = {}
    for r in rows:
        key = r["rung"] if np.isnan(r["value"]) else f"{r['rung']}@{r['value']:g}"
        by_rung.setdefault((r["questions"], key, r["variant"]), r)
    out = []
    for r in rows:
        parent = _parent(r, by_rung)
        gap, gap_lo, gap_hi = seed_interval(r["gaps"])
        gap_g, gap_g_lo, gap_g_hi = seed_interval(r["gaps_G"])
        part = difference_interval(parent["gaps"], r["gaps"]) if parent is not None else (gap, gap_lo, gap_hi)
        questions = r["questions"]
        assert parent is None or parent["questions"] == questions  # one question set per part
        twin = _twin_of(r, by_rung)
        vs_twin = difference_interval(twin["gaps"], r["gaps"]) if twin is not None else (np.nan,) * 3
        out.append({"rung": _label(r), "policy": r["policy"], "run": r["run"], "questions": questions,
                    "n_seeds": len(r["gaps"]),
                    "gap": gap, "gap_lo": gap_lo, "gap_hi": gap_hi,
                    "gap_G": gap_g, "gap_G_lo": gap_g_lo, "gap_G_hi": gap_g_hi,
                    **with_interval("bias", r["bias"]), **with_interval("bias_G", r["bias_G"]),
                    "parent": "" if parent is None else _label(parent),
                    "part": part[0], "part_lo": part[1], "part_hi": part[2],
                    "cause": _cause(r, parent),
                    "twin": "" if twin is None else _label(twin), "vs_twin": vs_twin[0], "vs_twin_lo": vs_twin[1],
                    "vs_twin_hi": vs_twin[2]})
    return pd.DataFrame(out, columns=LADDER_COLUMNS)
