"""One criterion per row: what each claim measures, how its value compares with its tolerance, and
which wrong theories it is re-run against (its power).

    CRITERIA   # the table: id, measure, metric, criterion, tolerance, power kind, which policies

A measure is a function ``(study, policy, theory) -> Measure | None`` (``c1``, ``paper`` for C2..C7,
``extensions`` for E2..E5; None: the scale made no run that tests it). Where the value depends on a
prediction, the theory is the one the row is judged by, and the same function re-run with a wrong
theory is how ``table`` counts the power. A new claim is one measure function and one ``Criterion``
entry in ``CRITERIA``.

Power kinds (``Criterion.power``):
- ``named``: re-run against ``wrong`` (``theories.wrong_theories``; C1/E1: ``wrong_weights``); a wrong theory is
  rejected where its own verdict, by the same criterion and tolerance, is "fails".
- ``null``: an effect check (a sign or a change) against the no-effect null: rejected where the
  interval lies wholly on the claimed side of 0.
- ``theory-free``: the value does not depend on the prediction (C2): it rejects none of the named
  wrong theories, so it cannot hold.
- ``none``: a measurement with no criterion (E2a): no verdict, no power.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from grpo_amp import registry
from grpo_amp.analysis.claims.c1 import c1
from grpo_amp.analysis.claims.e6 import e6_order, e6_r2, e6_redraws, e6_rescale, e6_runaway, redraw_wrong
from grpo_amp.analysis.claims.extensions import e2a, e2b, e3, e4, e5, e5_sweep, e5_u_left, e5_u_right, e5_visible
from grpo_amp.analysis.claims.measure import Measure
from grpo_amp.analysis.claims.paper import c2, c3, c4a, c4b, c5a, c5b, c6a, c6b, c7a, c7b
from grpo_amp.analysis.claims.study import Study
from grpo_amp.analysis.claims.theories import C3, C3_G, NULL, Theory, own, wrong_theories, wrong_weights


def _everyone(policy: str) -> bool:
    return True


def _sampled(policy: str) -> bool:
    return registry.policy(policy).sampled


@dataclass(frozen=True)
class Criterion:
    """One row kind of claims.csv: ``claim`` (``_G`` appended where judged by C3_G), how it is measured,
    how the value compares with the tolerance (``<=``, ``>=``; "" for a measurement with no verdict)."""
    claim: str
    measure: Callable[[Study, str, Theory], Measure | None]
    metric: str
    criterion: str
    tolerance: str                                 # a TOLERANCE key
    power: str = "named"                           # named | null | theory-free | none (module docstring)
    per_prediction: bool = False                   # one row per prediction of the policy (C3 and C3_G)
    right: Callable[[str], Theory] | None = None   # the theory the row is judged by (default: the policy's own)
    wrong: Callable[[Theory], tuple[Theory, ...]] = wrong_theories
    applies: Callable[[str], bool] = _everyone
    draws_groups: bool = False                     # the measure samples its own groups (C1, E1): a sampled
                                                   # value for every policy, the exact rungs' included


def _finite_g(policy: str) -> Theory:
    return C3_G


def _population(policy: str) -> Theory:
    return C3


CRITERIA: tuple[Criterion, ...] = (
    Criterion("C1", c1, "RMS(sampled surrogate - closed form) / RMS(its SE) with the trainer's finite-G weights, "
              "pooled over seeds", "<=", "noise_ratio", power="named", right=_finite_g, wrong=wrong_weights,
              draws_groups=True),
    Criterion("C2", c2, "largest median KL(pi_N | correct || pi_ref | correct), nats", "<=", "kl_in_correct",
              power="theory-free"),
    Criterion("C3", c3, "largest mean |p_n - trajectory| over variants (train, n >= 1)", "<=", "pos_gap",
              per_prediction=True),
    Criterion("C4a", c4a, "share of questions on the predicted side of p_ref at N (amplified), kl=ref runs", ">=",
              "amplified_share", per_prediction=True, wrong=lambda right: (*wrong_theories(right), NULL)),
    Criterion("C4b", c4b, "largest mean |p_N - predicted limit| over kl=ref runs", "<=", "limit_gap",
              per_prediction=True),
    Criterion("C5a", c5a, "mean_only: mean |spread after step 1 - predicted spread| (max_n>=1 |p_n - p_1|)", "<=",
              "pos_gap", per_prediction=True),
    Criterion("C5b", c5b, "spread after step 1: mean_std minus mean_only (mean_std adapts to p_n-1)", ">=", "effect",
              power="null"),
    Criterion("C6a", c6a, "mean |p_N - predicted limit| under kl=mirror (mirror -> 1)", "<=", "limit_gap",
              per_prediction=True),
    Criterion("C6b", c6b, "mean |p_N - predicted p_N| under kl=both (ref's fixed points, its own limit)", "<=",
              "limit_gap", per_prediction=True),
    Criterion("C7a", c7a, "Spearman rho(beta, final mean PoS), per seed (the sign)", "<=", "effect", power="null"),
    Criterion("C7b", c7b, "largest |final mean PoS - mean predicted limit| over the beta sweep (the curve)", "<=",
              "limit_gap", per_prediction=True),
    Criterion("E1a", c1, "C1's noise ratio with E1's finite-G weights (as C1)", "<=", "noise_ratio",
              right=_finite_g, wrong=lambda right: (replace(right, name="population weights", finite_g=False),),
              applies=_sampled, draws_groups=True),
    Criterion("E1b", c1, "C1's noise ratio with the population weights (must be rejected)", ">=", "noise_ratio",
              right=_population, wrong=lambda right: (replace(right, name="E1's finite-G weights", finite_g=True),),
              applies=_sampled, draws_groups=True),
    Criterion("E2a", e2a, "change of the C3 gap from the smallest to the largest G (a measurement)", "", "effect",
              power="none", right=_population),
    Criterion("E2b", e2b, "signed mean of p_n - trajectory on the base run (negative: practice under-amplifies)",
              "<=", "effect", power="null", per_prediction=True),
    Criterion("E3", e3, "held-out PoS gain (iteration N - 0), per seed", ">=", "effect", power="null"),
    Criterion("E4", e4, "largest RMSE of the fit with an effective beta (wrong theories: on the base run)", "<=",
              "fit_rmse", per_prediction=True,
              wrong=lambda right: tuple(w for w in wrong_theories(right) if w.beta_factor == 1.0)),
    Criterion("E5", e5, "R1/R2: largest |p_n - own prediction| over variants, questions, n >= 1", "<=", "pos_gap"),
    Criterion("E5", e5_sweep, "R3/R4: change of the C3_G gap from the smallest to the largest M / m", "<=", "effect",
              power="null", right=_finite_g),
    Criterion("E5", e5_visible, "R5: mean |p_n - C3_G| of one group's own maximiser", ">=", "visible_gap",
              power="null", right=_finite_g),
    Criterion("E5a", e5_u_left, "R6: C3_G gap at the interior minimum minus at the smallest M", "<=", "effect",
              power="null", right=_finite_g),
    Criterion("E5b", e5_u_right, "R6: C3_G gap at the largest M minus at the interior minimum", ">=", "effect",
              power="null", right=_finite_g),
    # E6 (analysis.claims.e6): every advantage estimator of the GRPO family, its own S_G
    Criterion("E6", e6_r2, "R2: largest |p_n - one C3_G step with the run's estimator| over estimators", "<=",
              "pos_gap", right=_finite_g),
    Criterion("E6c", e6_rescale, "largest |beta_eff ratio / E6's exact rescaling - 1| over pairs (rloo/dr_grpo, "
              "verl/grpo), per seed", "<=", "rescale_error", right=_finite_g,
              wrong=lambda right: (replace(right, name="no rescaling (ratio 1)", null=True),)),
    Criterion("E6b", e6_order, "Spearman rho(predicted C3_G final PoS, measured) over estimators, per seed", ">=",
              "effect", power="null", right=_finite_g, applies=_sampled),
    Criterion("E6d", e6_redraws, "dynamic sampling: RMS over seeds of z = (measured - predicted redraws) / predicted "
              "SD, summed over (question, iteration); predicted: Geometric(Z(p_n-1)) truncated at the cap", "<=",
              "redraw_z", right=_finite_g, wrong=redraw_wrong, applies=_sampled),
    Criterion("E6e", e6_runaway, "uncapped dynamic sampling: share of the runaway basin's questions (C3_G limit 1) "
              "whose final PoS is nearer C3_G's p_N than the anchored p_N without 1/Z, per seed", ">=",
              "runaway_share", right=_finite_g,
              wrong=lambda right: (replace(right, name="no dynamic-sampling factor (plain verl)",
                                           dynamic_sampling=False),)),
)


def draws_groups(claim: str) -> bool:
    """Whether a claims.csv row's value comes from groups its measure samples (``claim`` as written
    there, ``_G`` suffix included): such a value is judged as sampled whatever policy it is about."""
    return any(c.draws_groups for c in CRITERIA if c.claim == claim.removesuffix("_G"))


def right_theory(c: Criterion, policy: str, prediction: str) -> Theory:
    return c.right(policy) if c.right is not None else own(prediction)
