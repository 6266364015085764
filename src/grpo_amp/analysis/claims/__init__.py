"""Verdicts per claim (docs/theory.md's C1..C7, E1..E5) from the measured files, never by hand.

    study = Study(runs, predictions, c1)   # runs.csv rows, predict frames and C1 frames per (policy, run)
    table = claims_table(study)            # CLAIM_COLUMNS, one row per claim and policy
    text = claims_markdown(table, "smoke")

One job per module: ``theories`` (the policy's own prediction and the named wrong ones), ``study``
(what the claims read, and each theory's prediction for a run), ``measure`` (what a measure returns,
``TOLERANCE``), the measures themselves (``c1``; ``paper``: C2..C7; ``extensions``: E2..E5),
``criteria`` (the ``CRITERIA`` table: one row kind each), ``table`` (claims.csv: verdict and power
per row) and ``markdown`` (claims.md). The interval rule is ``grpo_amp.analysis.stats.row_verdict``.
A new claim is one measure function and one ``Criterion`` entry in ``criteria.CRITERIA``.
"""

from grpo_amp.analysis.claims.criteria import CRITERIA, Criterion
from grpo_amp.analysis.claims.measure import TOLERANCE, Measure, tolerance
from grpo_amp.analysis.claims.markdown import claims_markdown
from grpo_amp.analysis.claims.study import Study, predictions_of
from grpo_amp.analysis.claims.table import claims_table

__all__ = ["CRITERIA", "TOLERANCE", "Criterion", "Measure", "Study", "claims_markdown", "claims_table",
           "predictions_of", "tolerance"]
