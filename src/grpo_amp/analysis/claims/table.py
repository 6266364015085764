"""claims.csv: every criterion of ``criteria.CRITERIA`` for every policy (and prediction) it applies to.

    table = claims_table(study)   # CLAIM_COLUMNS, one row per (claim, policy)

A row's verdict follows from its own columns alone (``stats.row_verdict``): the interval rule on
value_lo, value_hi, tolerance and criterion, then "no power" where it would hold but rejects none of
its wrong theories (``power`` = "k/n wrong theories rejected"), "measured" where it has no criterion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from grpo_amp import registry
from grpo_amp.analysis.claims.criteria import CRITERIA, Criterion, right_theory
from grpo_amp.analysis.claims.measure import Measure, tolerance
from grpo_amp.analysis.claims.study import Study, predictions_of
from grpo_amp.analysis.claims.theories import FINITE_G
from grpo_amp.analysis.stats import FAILS, interval_verdict, null_rejected, row_verdict
from grpo_amp.parallel import parallel_map
from grpo_amp.schema import CLAIM_COLUMNS


def _fails(m: Measure, criterion: str, tol: float) -> bool:
    _, lo, hi = m.summary()
    return interval_verdict(lo, hi, tol, holds_below=criterion == "<=") == FAILS


def power(c: Criterion, study: Study, policy: str, right, m: Measure, tol: float) -> tuple[str, str]:
    """("k/n", words): how many of the criterion's wrong theories the same check rejects on the same data."""
    if c.power == "none":
        return "", ""
    if c.power == "null":
        _, lo, hi = m.summary()
        rejected = null_rejected(lo, hi, c.criterion)
        return f"{int(rejected)}/1", f"the no-effect null (0) {'rejected' if rejected else 'not rejected'}"
    wrong = c.wrong(right)
    if c.power == "theory-free":
        return f"0/{len(wrong)}", "the value does not depend on the prediction: no wrong theory is rejected"
    verdicts = {}
    for w in wrong:
        mw = c.measure(study, policy, w)
        verdicts[w.name] = mw is not None and _fails(mw, c.criterion, tol)
    rejected = [name for name, r in verdicts.items() if r]
    kept = [name for name, r in verdicts.items() if not r]
    words = "rejects " + (", ".join(rejected) or "none") + ("; not " + ", ".join(kept) if kept else "")
    return f"{len(rejected)}/{len(wrong)}", words


def _rows(c: Criterion, study: Study, policy: str) -> list[dict]:
    rows = []
    predictions = predictions_of(policy) if c.per_prediction else (predictions_of(policy)[0],)
    for prediction in predictions:
        right = right_theory(c, policy, prediction)
        m = c.measure(study, policy, right)
        if m is None:
            continue
        tol = tolerance(c.tolerance, policy) if c.criterion else np.nan
        value, lo, hi = m.summary()
        k_of_n, words = power(c, study, policy, right, m, tol)
        claim = c.claim + ("_G" if c.per_prediction and prediction == FINITE_G else "")
        rows.append({"claim": claim, "policy": policy, "verdict": row_verdict(lo, hi, tol, c.criterion, k_of_n),
                     "criterion": c.criterion, "metric": c.metric, "value": value, "value_lo": lo, "value_hi": hi,
                     "n_seeds": m.n_seeds if m.n_seeds is not None else int(np.isfinite(m.values).sum()),
                     "tolerance": tol, "power": k_of_n,
                     "evidence": f"judged by {right.name}; {m.evidence}" + (f"; power: {words}" if words else "")})
    return rows


def _policy_rows(study: Study, policy: str) -> list[list[dict]]:
    """Every criterion's rows of one policy, in CRITERIA's order."""
    return [_rows(c, study, policy) if c.applies(policy) else [] for c in CRITERIA]


def claims_table(study: Study, workers: int = 1) -> pd.DataFrame:
    """One row per (criterion, policy, prediction), criteria first; each policy's rows computed on their own (over
    ``workers`` processes), so the table does not depend on ``workers``."""
    # a control run enters its policy's E3 evidence, not a row of its own
    policies = [p for p in study.runs["policy"].unique() if registry.policy(p).control_of is None]
    by_policy = dict(zip(policies, parallel_map(_policy_rows, policies, study, workers)))
    rows = [row for i in range(len(CRITERIA)) for policy in policies for row in by_policy[policy][i]]
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)
