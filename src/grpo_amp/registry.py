"""One table per choice: policies, sweeps and figures. Everything else reads these, Snakemake too.

    from grpo_amp.registry import POLICIES, SWEEPS, FIGURE_NAMES
    POLICIES["tabular_sgd"].family      # "tabular": it starts from results/{scale}/reference/tabular/
    POLICIES["tabular_sgd"].sampled     # True: repeated over seeds, G/M/estimator sweeps apply
    SWEEPS["group_size"].tag            # "G": the run name mean_std_ref-G32 sets grpo.group_size=32

Adding a policy is one ``PolicySpec`` below plus one entry in ``grpo_amp.grpo.updates.LOOPS``, which binds
its name to the code it runs (that module's docstring says how). Hydra's
``policy=<name>`` option, the config's enum, the Snakemake wildcards, the claims columns, the plot
order and the ladder all come from this table. Ground layer: no torch, no pandas, nothing of ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


# --------------------------------------------------------------------------- families
@dataclass(frozen=True)
class FamilySpec:
    """A kind of policy sharing one reference directory (``policies.load_reference`` reads it)."""
    name: str
    tasks: tuple[str, ...]     # the conf/task/ options it can run (the first is its default)
    reference_policy: str      # whose config builds pi_ref (the `reference` rule)
    seeds_as_rows: bool        # seeds train as one policy of seeds x questions (they share no parameters)


FAMILY_TABLE = (
    FamilySpec("tabular", ("tabular",), "tabular_exact", seeds_as_rows=True),
    # a causal LM: our Llama on modarith, or any local HF checkpoint on a file task (policy.checkpoint);
    # the loader reads which from the reference directory's task.json
    FamilySpec("transformer", ("modarith", "file", "reasoning_gym"), "transformer", seeds_as_rows=False),
    # the transformer's tabular twin (issue 20): a table whose pi_ref per question is the trained transformer's
    # pi_ref over its answer-shaped outputs (and one "other" outcome), read from results/{scale}/reference/
    # transformer: the same questions, p_ref and correct sets, no shared parameters
    FamilySpec("twin", ("twin",), "twin_r1", seeds_as_rows=True),
)
FAMILIES = {f.name: f for f in FAMILY_TABLE}


# --------------------------------------------------------------------------- policies
# tolerance kinds: how close to C3 a policy is expected to be (claims.TOLERANCE has the numbers)
ROUNDOFF = "roundoff"    # theory in the loop: agreement to floating-point round-off (a self-check)
OPTIMISER = "optimiser"  # a numerical maximiser of an exact objective: agreement to its tolerance
PRACTICE = "practice"    # anything that optimises approximately or from samples


@dataclass(frozen=True)
class PolicySpec:
    """One way of running a GRPO iteration: a family (the model) and what to expect of it.

    The code it runs is bound to ``name`` in ``grpo_amp.grpo.updates.LOOPS``.
    """
    name: str
    family: str
    tolerance: str                # ROUNDOFF, OPTIMISER or PRACTICE
    sampled: bool                 # draws groups: repeated over seeds, its numbers carry seed intervals
    sweeps: tuple[str, ...]       # the SWEEPS that change what this policy does
    label: str                    # a few words for figures and the claims table
    rung: str | None = None       # docs/theory.md's E5 rung (R1 ... R6), if the policy is one
    grpo: str = "paper"           # the conf/grpo/ preset it runs with (the algorithm's choices)
    pos_method: str = "exact"
    # whose group advantage the loop computes: "variant" (ours, as the variant says) or "trl" (TRL divides by
    # the sample std + 1e-4): the finite-G prediction uses the one really computed (stages.predict.ADVANTAGES)
    advantage: str = "variant"
    control_of: str | None = None  # a control run of another policy's claim (E3): in no claim row and no ladder itself
    # E5's 2 x 2 x 2 factorial (grpo_amp.analysis.factorial): (advantage, optimiser, objective) levels, see FACTORS
    cell: tuple[str, str, str] | None = None
    # Snakemake's priority for its train jobs: longest first, so that the last minutes are not one long job on one
    # core (published default, 2 cores: control 116 s, transformer_r1/r2 85 s, trl 35 s, transformer 16 s, the table
    # 3-6 s; without it transformer_r1 ran last and the machine spent 120 of 936 s on one job)
    priority: int = 0

    @property
    def practice(self) -> bool:
        return self.tolerance == PRACTICE


# E5's tabular ladder as a 2 x 2 x 2 factorial (issue 18; grpo_amp.analysis.factorial, docs/theory.md's E5). Each
# factor has R1's level first and practice's (R6's) second:
#   advantage: A from the true p_{n-1} (docs/theory.md's population A(r; p), known on a table) or from the group
#              (the trainer's group mean/std: E1's A_G, whose expectation over groups is E1's weights)
#   optimiser: the iteration's argmax (L-BFGS, or R5's closed form) or M steps of the trainer's Adam
#   objective: the exact expectation over groups of pi_{n-1} or one sampled group of G per question
# R1 = (true_p, argmax, exact), R6 = (group, steps, one_group); R2, R3, R5 are three more cells and
# tabular_true_p_steps, tabular_true_p_group_argmax, tabular_true_p_sgd the other three.
FACTORS = {"advantage": ("true_p", "group"), "optimiser": ("argmax", "steps"), "objective": ("exact", "one_group")}

_PRACTICE_SWEEPS = ("beta", "group_size", "inner_steps", "kl_estimator", "clip_eps", "estimator")

POLICY_TABLE = (  # plot order is table order
    PolicySpec("tabular_exact", "tabular", ROUNDOFF, False, ("beta",),
               "C2's closed form in the loop (self-check)"),
    PolicySpec("tabular_r1", "tabular", OPTIMISER, False, ("beta",),
               "R1: L-BFGS on the population objective", rung="R1",
               cell=("true_p", "argmax", "exact")),
    PolicySpec("tabular_r2", "tabular", OPTIMISER, False,
               ("beta", "group_size", "estimator"), "R2: L-BFGS on the exact finite-G objective", rung="R2",
               cell=("group", "argmax", "exact")),
    PolicySpec("tabular_r3", "tabular", PRACTICE, False,
               ("beta", "group_size", "inner_steps"), "R3: M Adam steps on the exact finite-G objective", rung="R3",
               cell=("group", "steps", "exact")),
    PolicySpec("tabular_r4", "tabular", PRACTICE, True,
               ("beta", "group_size", "inner_steps", "groups_per_question"),
               "R4: M steps on m sampled groups", rung="R4"),
    PolicySpec("tabular_r5", "tabular", PRACTICE, True,
               ("beta", "group_size"), "R5: one group's own maximiser", rung="R5",
               cell=("group", "argmax", "one_group")),
    PolicySpec("tabular_sgd", "tabular", PRACTICE, True, _PRACTICE_SWEEPS,
               "R6: sampled GRPO on a table", rung="R6",
               cell=("group", "steps", "one_group")),
    # the factorial's other three cells (no chain rung: grpo_amp.analysis.ladder leaves them out, grpo_amp.analysis.factorial reads them):
    # R3, R5 and R6 with the true p_{n-1}'s advantage A(r; p_{n-1}) in place of the group's
    PolicySpec("tabular_true_p_steps", "tabular", PRACTICE, False,
               ("beta", "inner_steps"), "factorial: M Adam steps on the exact population objective",
               cell=("true_p", "steps", "exact")),
    PolicySpec("tabular_true_p_group_argmax", "tabular", PRACTICE, True,
               ("beta", "group_size"), "factorial: one group, true-p advantages, its own maximiser",
               cell=("true_p", "argmax", "one_group")),
    PolicySpec("tabular_true_p_sgd", "tabular", PRACTICE, True,
               ("beta", "group_size", "inner_steps"), "factorial: sampled GRPO on a table with true-p advantages",
               cell=("true_p", "steps", "one_group")),
    PolicySpec("transformer", "transformer", PRACTICE, True, (*_PRACTICE_SWEEPS, "plus_sign"),
               "sampled GRPO on a transformer", grpo="practice_token", priority=1),
    # the transformer as close to each iteration's maximiser as the model allows: the same
    # grpo_update with m groups per question and inner steps until the sampled objective stops improving.
    # transformer - control = sampling + optimisation on the transformer; control - tabular R4 at the same
    # G, m, beta = parametrisation (grpo_amp.analysis.ladder)
    PolicySpec("transformer_control", "transformer", PRACTICE, True, ("plus_sign",),
               "transformer control: m groups, steps until the objective stops improving",
               grpo="transformer_control", priority=3),
    # E5's exact rungs on the transformer (issue 20): each iteration maximises the exact objective, computed on
    # every answer-shaped output (grpo.lm_rungs), over the model's parameters by L-BFGS. Their gap to C3 (C3 with
    # E1's S_G) is the parametrisation part with no sampling in it. Not a certified maximiser (the problem is
    # not concave): PRACTICE tolerance; the tolerance reached per iteration is in metrics.csv.
    PolicySpec("transformer_r1", "transformer", PRACTICE,
               False, ("beta", "plus_sign"), "R1 on the transformer: L-BFGS on the exact population objective",
               grpo="practice_token", priority=3),
    PolicySpec("transformer_r2", "transformer", PRACTICE,
               False, ("beta", "group_size"), "R2 on the transformer: L-BFGS on the exact finite-G objective",
               grpo="practice_token", priority=3),
    # the table's rungs on the transformer's twin (same questions as the transformer; the transformer's G, beta,
    # iterations: conf/sizing/*_twin.yaml). transformer - twin R6, control - twin R4 and transformer_r2 - twin R2
    # are what the shared parameters add on identical questions (grpo_amp.ladder)
    PolicySpec("twin_r1", "twin", OPTIMISER, False, ("beta",),
               "twin R1: L-BFGS on the population objective", rung="R1"),
    PolicySpec("twin_r2", "twin", OPTIMISER, False,
               ("beta", "group_size"), "twin R2: L-BFGS on the exact finite-G objective", rung="R2"),
    PolicySpec("twin_r4", "twin", PRACTICE, True,
               ("beta", "group_size", "inner_steps", "groups_per_question"), "twin R4: M steps on m sampled groups",
               rung="R4"),
    PolicySpec("twin_sgd", "twin", PRACTICE, True, _PRACTICE_SWEEPS,
               "twin R6: sampled GRPO on the twin table", rung="R6"),
    # E3's no-signal control (issue 20): `transformer` with each question's rewards shuffled among its outputs
    PolicySpec("transformer_shuffled", "transformer", PRACTICE,
               True, (), "E3 control: sampled GRPO with rewards shuffled within each question", grpo="practice_token",
               control_of="transformer", priority=1),
    # TRL's own loop on the same checkpoint, task and GRPO settings as `transformer` (grpo_amp.trl_family.settings maps them)
    # its estimator sweep: the estimators TRL can express (trl_family.settings.TRL_ESTIMATORS; the rest refused)
    PolicySpec("trl", "transformer", PRACTICE, True, ("beta", "lr", "estimator", "plus_sign"),
               "TRL 1.16 GRPOTrainer on the transformer",
               grpo="practice_token", advantage="trl", priority=2),
)
POLICIES = {p.name: p for p in POLICY_TABLE}
POLICY_NAMES = tuple(POLICIES)
PRACTICE_POLICIES = tuple(p.name for p in POLICY_TABLE if p.practice)
SAMPLED_POLICIES = tuple(p.name for p in POLICY_TABLE if p.sampled)
CELLS = {p.cell: p.name for p in POLICY_TABLE if p.cell is not None}  # (advantage, optimiser, objective) -> policy
assert len(CELLS) == 2 ** len(FACTORS), "every cell of the E5 factorial has exactly one policy"


def policy(name: str) -> PolicySpec:
    if name not in POLICIES:
        raise KeyError(f"unknown policy {name!r} (choose from {', '.join(POLICIES)})")
    return POLICIES[name]


def family_of(policy_name: str) -> str:
    return policy(policy_name).family


# --------------------------------------------------------------------------- sweeps
@dataclass(frozen=True)
class Sweep:
    """One swept knob: the run-name tag, the Hydra key it sets, the StudyConfig list of values.

    The runs.csv column of the setting is the sweep's name.
    """
    name: str
    tag: str
    key: str
    values_field: str
    value_pattern: str = r"[0-9.]+"
    column: bool = True  # runs.csv has a column of it (the draw has none: its runs are draws.csv's, not runs.csv's)

    def format(self, value) -> str:
        """``value`` as the run name writes it (0.5 -> "0.5", 2.0 -> "2", "dapo" -> "dapo")."""
        return f"{value:g}" if isinstance(value, float) else str(value)

    def valid(self, value) -> bool:
        """Whether ``value`` can be a run-name value of this sweep (the Snakemake wildcard's pattern)."""
        return re.fullmatch(self.value_pattern, self.format(value)) is not None


SWEEP_TABLE = (
    Sweep("beta", "beta", "variant.beta", "beta_sweep"),                     # C7
    Sweep("group_size", "G", "grpo.group_size", "group_sweep"),             # E1/E2
    Sweep("inner_steps", "M", "grpo.inner_steps", "inner_sweep"),           # E2/E5: optimisation error
    Sweep("kl_estimator", "kl", "grpo.kl_estimator", "estimator_sweep", r"[a-z0-9]+"),  # E2: k1, k3
    Sweep("clip_eps", "clip", "grpo.clip_eps", "clip_sweep"),               # E2: ratio clipping
    Sweep("groups_per_question", "m", "grpo.groups_per_question", "groups_sweep"),  # E5 R4: sampling error
    # E4: the implicit penalty of a run without one (TRL's beta = 0) is set by the step size: beta_eff per lr
    Sweep("lr", "lr", "grpo.lr", "lr_sweep", r"[0-9.]+(?:e-?[0-9]+)?"),
    # E6: the advantage estimator (grpo_amp.estimators); mean_std_ref-estdapo sets estimator.name=dapo
    Sweep("estimator", "est", "estimator.name", "advantage_sweep", r"[a-z][a-z0-9_]*"),
    # issue 20: another task draw (split, label noise or p_ref table, and pi_ref; config.draw_seed says how the
    # seeds move); mean_std_ref-draw2 sets task.draw=2. Draw 0 is the plain run: no draw0. Its runs are the base
    # variant's of StudyConfig.draw_policies only (study.runs.draw_runs_of_study) and feed draws.csv alone.
    Sweep("draw", "draw", "task.draw", "task_draws", r"[1-9][0-9]*", column=False),
    # issue 20: C2 on the modarith task whose answers may also start with "+" (4 correct spellings a value, not 2);
    # mean_std_ref-sign1 sets task.plus_sign=1 and trains from its own pi_ref (reference/transformer-signed)
    Sweep("plus_sign", "sign", "task.plus_sign", "sign_sweep", r"1", column=False),
)
SWEEPS = {s.name: s for s in SWEEP_TABLE}
SWEEP_OF_TAG = {s.tag: s.name for s in SWEEP_TABLE}
VARIANT_PATTERN = r"[A-Za-z0-9_]+"
# a run name: VARIANT or VARIANT-<tag><value>; derived from SWEEPS so a new sweep is one row above
RUN_PATTERN = (VARIANT_PATTERN + r"(?:-(?:" + "|".join(f"{re.escape(s.tag)}{s.value_pattern}" for s in SWEEP_TABLE)
               + r"))?")
RUN_SYNTAX = "VARIANT or VARIANT-{" + "|".join(s.tag for s in SWEEP_TABLE) + "}VALUE"


# --------------------------------------------------------------------------- figures
FIGURE_NAMES = ("trajectories", "per_question", "fixed_points", "normalisation", "regularisation",
                "practice_gap", "gap_ladder", "factorial", "heldout", "estimators_s_g", "estimators_limits")

