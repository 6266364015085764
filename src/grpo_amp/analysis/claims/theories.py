"""The theories a check is run against: the policy's own prediction, and named wrong ones (its power).

    right = own("G")                  # C3 with E1's S_G for the run's G
    for wrong in wrong_theories(right):   # beta x2, beta x0.5, population weights, ...
        traj = study.trajectory(policy, run, wrong)

A check earns "holds" only if it would reject a wrong theory on the same data (docs/theory.md's claims,
README's "What is checked"). Each ``Theory`` changes the run's C3 in one named way; ``theory_kwargs``
turns it into ``grpo_amp.theory`` arguments for one run of runs.csv. The wrong theories:

- beta x2, beta x0.5: the right S, the wrong strength of the KL penalty;
- the other weights: population S for a finite-G rung (and E1's S_G for a population one);
- the other normalisation's S (mean_std <-> mean_only);
- S capped: eps = 0.05 inside the root (S <= 1/sqrt(0.05) = 4.5);
- the other kl: mirror for a ref run, ref for a mirror or both run;
- (C1/E1 only) weights off by 10%: x1.1 and x0.9; beta and kl do not enter C1's closed form.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from grpo_amp import theory

POPULATION, FINITE_G = "pop", "G"  # the two predictions a policy can be judged by (C3 and C3_G)
CAPPED_EPS = 0.05
WEIGHT_ERRORS = (1.1, 0.9)


@dataclass(frozen=True)
class Theory:
    """C3 for a run, changed in one named way (all defaults: the run's own population C3)."""
    name: str
    finite_g: bool = False       # E1's S_G with the run's G (and the loop's own advantage), else population S
    beta_factor: float = 1.0
    other_norm: bool = False
    eps: float | None = None     # replaces the run's eps
    other_kl: bool = False
    weight_factor: float = 1.0   # C1/E1: both weights scaled
    null: bool = False           # no learning at all: p_n = p_ref (the wrong theory of a sign check)
    # E6e: False drops dynamic sampling's factor 1/Z from the run's estimator (plain verl: no runaway)
    dynamic_sampling: bool = True
    # E6d: the law of a group's redraws (analysis.claims.e6.REDRAW_LAWS; "geometric" is docs/theory.md E6's)
    redraw_law: str = "geometric"


C3 = Theory("C3")
C3_G = Theory("C3_G", finite_g=True)
NULL = Theory("no amplification (p_n = p_ref)", null=True)


def own(prediction: str) -> Theory:
    return C3_G if prediction == FINITE_G else C3


def wrong_theories(right: Theory) -> tuple[Theory, ...]:
    """The named wrong theories of a trajectory/limit check, each one change away from ``right``."""
    return (replace(right, name="beta x2", beta_factor=2.0), replace(right, name="beta x0.5", beta_factor=0.5),
            replace(right, name="population weights" if right.finite_g else "finite-G weights",
                    finite_g=not right.finite_g),
            replace(right, name="other normalisation", other_norm=True),
            replace(right, name=f"S capped (eps {CAPPED_EPS:g})", eps=CAPPED_EPS),
            replace(right, name="other kl", other_kl=True))


def wrong_weights(right: Theory) -> tuple[Theory, ...]:
    """C1/E1's wrong theories: only the weights enter its closed form (beta and kl do not)."""
    return (*(replace(right, name=f"weights x{f:g}", weight_factor=f) for f in WEIGHT_ERRORS),
            replace(right, name="population weights" if right.finite_g else "finite-G weights",
                    finite_g=not right.finite_g),
            replace(right, name="other normalisation", other_norm=True),
            replace(right, name=f"S capped (eps {CAPPED_EPS:g})", eps=CAPPED_EPS))


def theory_kwargs(t: Theory, settings, finite_group: dict | None = None) -> dict:
    """``grpo_amp.theory`` arguments of theory ``t`` for one run (a runs.csv row or a dict of its settings).

    ``finite_group``: the loop's own advantage where it is not the variant's (TRL: sample std + 1e-4
    outside the root), applied to the finite-G weights only, as the predict stage does.
    """
    norm, eps, std = str(settings["norm"]), float(settings["eps"]), str(settings["std"])
    if t.finite_g and finite_group:
        norm, eps, std = finite_group.get("norm", norm), float(finite_group.get("eps", eps)), finite_group.get("std", std)
        if std == "sample" and finite_group.get("eps_inside") is False:
            std = theory.TRL_STD  # the estimators row's sample std + eps outside (TRL's): the one name these keywords have
    if t.other_norm:
        norm = "mean_only" if norm == "mean_std" else "mean_std"
    if t.eps is not None:
        eps = t.eps
    if not t.finite_g and std == theory.TRL_STD:
        std = "sample"  # eps outside the root exists for finite groups only
    kl = str(settings["kl"])
    if t.other_kl:
        kl = "mirror" if kl == "ref" else "ref"
    return dict(kl=kl, beta=float(settings["beta"]) * t.beta_factor, beta_prev=float(settings["beta_prev"]),
                norm=norm, eps=eps, std=std, group_size=int(settings["group_size"]) if t.finite_g else None)


def weights(t: Theory, p_prev, settings, finite_group: dict | None = None):
    """(w+, w-) of theory ``t`` at p_{n-1}, both times ``t.weight_factor``: C1's closed form is w+ p_n - w- (1 - p_n)."""
    kw = theory_kwargs(t, settings, finite_group)
    if kw["group_size"] is None:
        w_plus, w_minus = theory.advantage_weights(p_prev, kw["norm"], kw["eps"])
    else:
        w_plus, w_minus = theory.finite_group_weights(p_prev, kw["group_size"], kw["norm"], kw["eps"], kw["std"])
    return t.weight_factor * w_plus, t.weight_factor * w_minus
