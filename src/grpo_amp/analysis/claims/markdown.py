"""claims.md: a verdict matrix (claim x policy) and the full table with the numbers behind it."""

from __future__ import annotations

import pandas as pd

from grpo_amp import registry
from grpo_amp.analysis.claims.measure import fmt_interval


def claims_markdown(table: pd.DataFrame, scale: str, notes: list[str] | tuple[str, ...] = ()) -> str:
    """``notes`` (the runs' run.json notes, e.g. a sampling temperature != 1) come first, under "Read first"."""
    matrix = table.pivot(index="claim", columns="policy", values="verdict").fillna("-")
    order = [p for p in registry.POLICY_NAMES if p in matrix.columns]
    matrix = matrix[order + [c for c in matrix.columns if c not in order]]
    claims = list(dict.fromkeys(table["claim"]))  # the table's own order (CRITERIA's)
    matrix = matrix.loc[claims]
    lines = [f"# Claims at scale `{scale}`", "", "Verdicts from the measured files (docs/theory.md ids), one criterion "
             "per row. A value's interval is its 95% t-interval over seeds; a claim holds where the whole interval "
             "lies inside the tolerance (on the side its criterion names), fails where it lies wholly outside, and is "
             "inconclusive where it straddles. A row that would hold but rejects none of its wrong theories "
             "(`power`, k/n rejected on the same data) says `no power`; a row without a criterion is a measurement. "
             "Ids ending in `_G` are judged by C3 with E1's finite-G S_G.", "",
             "Policies: " + "; ".join(f"`{p}`: {registry.policy(p).label}" for p in order
                                      if p in registry.POLICIES) + ".", ""]
    if notes:
        lines += ["## Read first", "", *[f"- {n}" for n in notes], ""]
    lines += ["| claim | " + " | ".join(matrix.columns) + " |", "|---" * (len(matrix.columns) + 1) + "|"]
    lines += [f"| {c} | " + " | ".join(matrix.loc[c]) + " |" for c in matrix.index]
    lines += ["", "| claim | policy | verdict | metric | value [95% interval] | criterion | tolerance | power | seeds "
              "| evidence |", "|---" * 10 + "|"]
    for r in table.itertuples():
        criterion = r.criterion if isinstance(r.criterion, str) and r.criterion else "-"
        tol = "-" if pd.isna(r.tolerance) else f"{r.tolerance:.3g}"
        power = r.power if isinstance(r.power, str) and r.power else "-"
        lines.append(f"| {r.claim} | {r.policy} | **{r.verdict}** | {str(r.metric).replace('|', '/')} | "
                     f"{fmt_interval(r.value, r.value_lo, r.value_hi)} | {criterion} | {tol} | {power} | {r.n_seeds} | "
                     f"{str(r.evidence).replace('|', '/')} |")
    return "\n".join(lines) + "\n"
