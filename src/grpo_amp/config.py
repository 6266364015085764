"""Structured configs: the schema behind every YAML file in ``conf/``.

Hydra composes ``conf/config.yaml`` against these dataclasses, so a wrong type or an unknown
enum value fails at compose time with the field's name; ``to_config`` then builds the
dataclasses, whose ``__post_init__`` checks ranges (beta > 0, G >= 2, ...) with the field's name.

    from hydra import compose, initialize_config_dir
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = to_config(compose("config", ["policy=tabular_sgd", "variant=mean_only_ref"]))
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from grpo_amp import estimators, registry
from grpo_amp.io import InputError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"  # the one definition: runs, stages and tests read it


class Norm(str, Enum):
    mean_std = "mean_std"
    mean_only = "mean_only"


class KLTarget(str, Enum):
    ref = "ref"
    mirror = "mirror"
    both = "both"


class Std(str, Enum):
    population = "population"
    sample = "sample"


class KLEstimator(str, Enum):
    # per-token KL of the next-token distributions, summed over the whole vocabulary, at the sampled
    # prefixes (grpo.loss._full_vocab). On a table (T = 1) it is the exact KL(pi || target) and its exact
    # gradient; on a sequence model it is neither the sequence KL nor its gradient (the score term of
    # the prefix distribution is dropped): hence the name, not "exact".
    full_vocab = "full_vocab"
    k1 = "k1"        # log pi - log q on the sampled tokens
    k3 = "k3"        # Schulman's low-variance estimator, as in DeepSeekMath's GRPO
    # the old name of full_vocab: kept in the enum only so that grpo.kl_estimator=exact reaches
    # GRPOConfig's check and fails with one line naming the new value (not Hydra's list of choices)
    exact = "exact"


class RatioLevel(str, Enum):
    sequence = "sequence"  # pi(o|q)/pi_old(o|q): the ratio of docs/theory.md's C1
    token = "token"        # per-token ratios, as in PPO/TRL


class LossAgg(str, Enum):
    token_mean = "token_mean"        # sum over all tokens / number of tokens (DAPO, TRL's default)
    sequence_mean = "sequence_mean"  # mean over each sequence, then over sequences (original GRPO)


# The policies are grpo_amp.registry's table: a new policy is an entry there, never an edit here.
PolicyName = Enum("PolicyName", {name: name for name in registry.POLICY_NAMES}, type=str)
PolicyName.__doc__ = "A policy of grpo_amp.registry.POLICIES."


# The advantage estimators are grpo_amp.estimators' table (docs/theory.md E6).
EstimatorName = Enum("EstimatorName", {name: name for name in estimators.ESTIMATOR_NAMES}, type=str)
EstimatorName.__doc__ = "An estimator of grpo_amp.estimators.ESTIMATORS."


class PosMethod(str, Enum):
    exact = "exact"
    mc = "mc"


class ConfigError(InputError, ValueError):
    """A config value out of its range (beta <= 0, G < 2, ...): user input, reported as one line."""


def _require(cond: bool, name: str, value: Any, what: str) -> None:
    if not cond:
        raise ConfigError(f"{name} must be {what}; got {value!r}")


@dataclass
class VariantConfig:
    """A named GRPO variant (``conf/variant/<name>.yaml``): normalisation x KL target, with its strengths."""
    name: str = "mean_std_ref"
    norm: Norm = Norm.mean_std
    kl: KLTarget = KLTarget.ref
    beta: float = 1.0
    beta_prev: float = 0.0  # strength of KL(pi || pi_{n-1}) for kl=both
    eps: float = 0.0        # inside the sqrt, as in docs/theory.md (advantages): A = (r - p)/sqrt(p(1-p) + eps)
    std: Std = Std.population

    def __post_init__(self) -> None:
        _require(self.beta > 0, "variant.beta", self.beta, "> 0")
        _require(self.eps >= 0, "variant.eps", self.eps, ">= 0")
        _require(self.beta_prev >= 0, "variant.beta_prev", self.beta_prev, ">= 0")
        if self.kl == KLTarget.both:
            _require(self.beta_prev > 0, "variant.beta_prev", self.beta_prev, "> 0 with kl=both")
        if self.kl == KLTarget.mirror:
            # mirror's beta *is* the strength of KL(pi || pi_{n-1}); a second one would be ambiguous.
            _require(self.beta_prev == 0, "variant.beta_prev", self.beta_prev, "0 with kl=mirror (beta is its strength)")

    def penalty_kwargs(self) -> dict:
        """The KL penalty as grpo_amp.theory keywords (kl, beta, beta_prev): the one place they are built."""
        return dict(kl=self.kl.value, beta=self.beta, beta_prev=self.beta_prev)

    def theory_kwargs(self) -> dict:
        """The penalty and the variant's own advantage (norm, eps, std) as grpo_amp.theory keywords; a run's
        estimator (grpo_amp.estimators) replaces the advantage part where it is not ``grpo``."""
        return dict(**self.penalty_kwargs(), norm=self.norm.value, eps=self.eps, std=self.std.value)


@dataclass
class GRPOConfig:
    """The knobs of one GRPO run (E2 sweeps these)."""
    iterations: int = 10
    group_size: int = 8
    inner_steps: int = 4
    lr: float = 0.1
    clip_eps: Optional[float] = None  # None: no clipping (docs/theory.md's unclipped C1)
    kl_estimator: KLEstimator = KLEstimator.full_vocab
    ratio_level: RatioLevel = RatioLevel.sequence
    loss_agg: LossAgg = LossAgg.token_mean
    reset_optimizer: bool = True  # each iteration solves its own problem (C2), as the theory assumes
    c1_groups: int = 16  # fresh groups per question for the C1 effective-loss check
    # E5's rungs (grpo.rungs). R4: independent groups of G per question averaged into one objective.
    groups_per_question: int = 1
    # Early stopping of the inner steps (the transformer control): null runs exactly inner_steps steps
    # (practice). A number: at least inner_steps steps, then on while the sampled objective (the loss on
    # this round's groups) improves by at least inner_tol per step (mean over the last 4 steps,
    # grpo.trainer.STOP_WINDOW), at most max_inner_steps steps.
    inner_tol: Optional[float] = None
    max_inner_steps: int = 64
    # R1/R2's optimiser stops when every question's certificate (gradient L1 norm of objective / total
    # KL strength, a first-order bound on its PoS error) is below this: 1e-6 is the ladder's tolerance.
    # Not lower: on eps=0 questions with p_old within 1e-90 of 1 (A ~ -1e45) the certificate stalls
    # near 1.5e-7 while the PoS is right to ~1e-8 (measured at default scale, iteration 10).
    argmax_tol: float = 1e-6
    # L-BFGS iterations per GRPO iteration at most; the default table needs ~50-150 (measured)
    argmax_max_iter: int = 500
    # The transformer's R1/R2 (grpo.lm_rungs) read both keys differently (conf/sizing/*_modarith.yaml sets them):
    # no certificate exists there (not concave), so argmax_tol is the largest move of a train question's p
    # over 10 L-BFGS iterations below which it stops, and argmax_max_iter a budget; metrics.csv says what was reached.

    def __post_init__(self) -> None:
        _require(self.iterations >= 1, "grpo.iterations", self.iterations, ">= 1")
        _require(self.group_size >= 2, "grpo.group_size", self.group_size, ">= 2 (a group of 1 has no baseline)")
        _require(self.inner_steps >= 1, "grpo.inner_steps", self.inner_steps, ">= 1")
        _require(self.lr > 0, "grpo.lr", self.lr, "> 0")
        _require(self.kl_estimator != KLEstimator.exact, "grpo.kl_estimator", "exact",
                 "full_vocab, k1 or k3 (exact was renamed full_vocab: the per-token full-vocabulary KL at the "
                 "sampled prefixes, exact on a table only)")
        _require(self.clip_eps is None or self.clip_eps > 0, "grpo.clip_eps", self.clip_eps, "> 0 or null")
        _require(self.c1_groups >= 1, "grpo.c1_groups", self.c1_groups, ">= 1")
        _require(self.groups_per_question >= 1, "grpo.groups_per_question", self.groups_per_question, ">= 1")
        _require(self.inner_tol is None or self.inner_tol > 0, "grpo.inner_tol", self.inner_tol, "> 0 or null")
        if self.inner_tol is not None:
            _require(self.max_inner_steps >= self.inner_steps, "grpo.max_inner_steps", self.max_inner_steps,
                     f">= grpo.inner_steps ({self.inner_steps}) with grpo.inner_tol set")
        _require(self.argmax_tol > 0, "grpo.argmax_tol", self.argmax_tol, "> 0")
        _require(self.argmax_max_iter >= 1, "grpo.argmax_max_iter", self.argmax_max_iter, ">= 1")


@dataclass
class EstimatorConfig:
    """The advantage estimator (``conf/estimator/<name>.yaml``, docs/theory.md E6): one row of
    grpo_amp.estimators' table, read by the trainer's advantage and by the prediction alike."""
    name: EstimatorName = EstimatorName.grpo
    # dynamic sampling (dapo): a question's group is redrawn while its rewards are all equal, at most
    # this many times (verl's max_num_gen_batches); then the question sits this iteration out
    max_redraws: int = 16

    def __post_init__(self) -> None:
        _require(self.max_redraws >= 0, "estimator.max_redraws", self.max_redraws, ">= 0")


@dataclass
class ModelConfig:
    """A small Llama-style causal LM, trained from scratch (transformer policy only)."""
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    intermediate_size: int = 128


@dataclass
class ReferenceTrainingConfig:
    """How pi_ref is trained (transformer policy only)."""
    steps: int = 600
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0


@dataclass
class PolicyConfig:
    """Which policy trains (``conf/policy/``); the model fields matter for the transformer only."""
    name: PolicyName = PolicyName.tabular_exact
    pos_method: PosMethod = PosMethod.exact
    mc_samples: int = 256      # per question, for pos_method=mc and the exact-vs-mc cross-check
    save_checkpoints: bool = True  # every iteration's state on disk (else the last only); PoS is measured in training
    device: str = "auto"       # auto: cuda when available
    # a local HF causal-LM directory (with its tokenizer) to start from instead of our pi_ref; "" = ours
    checkpoint: str = ""
    # sampling temperature of practice runs (policy=trl) and of their Monte Carlo PoS; the theory's pi is
    # the sampling distribution, so a value != 1 tests the tempered policy, not the saved one
    temperature: float = 1.0
    model: ModelConfig = field(default_factory=ModelConfig)
    reference: ReferenceTrainingConfig = field(default_factory=ReferenceTrainingConfig)

    @property
    def family(self) -> str:
        """Names results/{scale}/reference/{family}/ (the registry's entry for the policy)."""
        return registry.family_of(self.name.value)

    @property
    def spec(self) -> registry.PolicySpec:
        return registry.policy(self.name.value)

    def __post_init__(self) -> None:
        _require(self.mc_samples >= 1, "policy.mc_samples", self.mc_samples, ">= 1")
        _require(self.temperature > 0, "policy.temperature", self.temperature, "> 0")


TASK_NAMES = ("tabular", "modarith", "file", "reasoning_gym", "twin")  # twin: the transformer's questions as a table
REASONING_GYM_FIELDS = ("dataset", "size")  # TaskConfig's fields read by task=reasoning_gym only
OPEN_ENDED_TASKS = ("file", "reasoning_gym")  # answers cannot be listed: PoS is Monte Carlo, the model is the user's
VERIFIERS = ("exact", "numeric", "math_verify")  # tasks.file_task.make_verifier


@dataclass
class TaskConfig:
    """The verifiable task (``conf/task/``): tabular outputs, modular arithmetic, or questions from a file."""
    name: str = "tabular"
    n_train: int = 64
    n_heldout: int = 16
    seed: int = 0
    # tabular: K outputs per question, p_ref spread over [p_ref_low, p_ref_high]
    n_outputs: int = 16
    p_ref_low: float = 0.02
    p_ref_high: float = 0.95
    # modarith: "a op b mod m" with per-question label noise ~ Beta(noise_a, noise_b)
    modulus: int = 11
    ops: list[str] = field(default_factory=lambda: ["+"])
    answer_digits: int = 2  # answers may be zero-padded up to this many digits: several correct outputs
    # answers may also carry a leading "+": "7", "07", "+7", "+07" (issue 20: C2 then compares pi_n and pi_ref
    # over four correct outputs that differ in two independent ways, not over a two-point set)
    plus_sign: bool = False
    noise_a: float = 1.0
    noise_b: float = 1.0
    # file: questions from JSON lines or parquet (tasks/file_task.py); "" = the shipped tasks/data/arith.jsonl
    path: str = ""
    prompt_field: str = "question"
    answer_field: str = "answer"
    split_field: str = ""        # optional; values train / heldout (test, validation -> heldout)
    verifier: str = "numeric"    # exact | numeric (GSM8K "#### 42") | math_verify (if installed)
    max_new_tokens: int = 16     # completion budget (the paper's appendix: 200)
    # reasoning_gym: questions generated offline by reasoning_gym.create_dataset(dataset, size=size, seed=seed)
    dataset: str = ""
    size: int = 64
    # issue 20's task draws: draw k >= 1 is another task and pi_ref, made with the seeds draw_seed(., k) (the
    # reference stage applies it); set by a draw run's name (mean_std_ref-draw2), 0 = the plain study
    draw: int = 0

    def __post_init__(self) -> None:
        _require(self.name in TASK_NAMES, "task.name", self.name, " or ".join(TASK_NAMES))
        _require(self.draw >= 0, "task.draw", self.draw, ">= 0")
        _require(self.n_train >= 1, "task.n_train", self.n_train, ">= 1")
        _require(self.n_heldout >= 0, "task.n_heldout", self.n_heldout, ">= 0")
        _require(self.n_outputs >= 2, "task.n_outputs", self.n_outputs, ">= 2")
        _require(0 < self.p_ref_low < self.p_ref_high < 1, "task.p_ref_low/p_ref_high",
                 (self.p_ref_low, self.p_ref_high), "0 < low < high < 1")
        _require(self.modulus >= 2, "task.modulus", self.modulus, ">= 2")
        _require(self.noise_a > 0 and self.noise_b > 0, "task.noise_a/noise_b", (self.noise_a, self.noise_b), "> 0")
        if self.name == "file":  # checked at compose time: a typo fails before any job starts
            _require(self.verifier in VERIFIERS, "task.verifier", self.verifier, "one of " + ", ".join(VERIFIERS))
            _require(bool(self.prompt_field), "task.prompt_field", self.prompt_field, "a field name")
            _require(bool(self.answer_field), "task.answer_field", self.answer_field, "a field name")
            _require(self.max_new_tokens >= 1, "task.max_new_tokens", self.max_new_tokens, ">= 1")
        if self.name == "reasoning_gym":
            _require(bool(self.dataset), "task.dataset", self.dataset, "a reasoning-gym dataset name")
            _require(self.size >= 1, "task.size", self.size, ">= 1")
            _require(self.max_new_tokens >= 1, "task.max_new_tokens", self.max_new_tokens, ">= 1")


# Task draw k's seeds: the task's (split, label-noise rates, tabular correct sets and p_ref table) and pi_ref's
# training seed both move by DRAW_SEED_STRIDE * k. Draw 0 is the seeds as configured (every existing file unchanged);
# the stride keeps draw k's seeds clear of draw 0's neighbours (the table draws p_ref with seed + 1, GRPO seeds
# run seed .. seed + seeds - 1).
DRAW_SEED_STRIDE = 1000


def draw_seed(seed: int, draw: int) -> int:
    """The seed that ``seed`` becomes in task draw ``draw`` (the one rule; stages.reference applies it)."""
    return seed + DRAW_SEED_STRIDE * draw


def _check_sweep_values(where: str, sweep: str, values) -> None:
    """Each value a run name can carry for ``sweep``; an estimator's must be a row of grpo_amp.estimators."""
    spec = registry.SWEEPS[sweep]
    for v in values:
        if sweep == "estimator":
            _require(v in estimators.ESTIMATORS, where, v, "one of " + ", ".join(estimators.ESTIMATORS))
        _require(spec.valid(v), where, v, f"a value of the {sweep} sweep ({spec.value_pattern})")


@dataclass
class StudyConfig:
    """Which runs a scale makes (read by the Snakefile through ``grpo_amp.study.runs``)."""
    policies: list[str] = field(default_factory=lambda: ["tabular_exact", "tabular_sgd"])
    variants: list[str] = field(default_factory=lambda: ["mean_std_ref"])
    sweep_variant: str = "mean_std_ref"  # the base of every sweep
    beta_sweep: list[float] = field(default_factory=list)       # C7
    group_sweep: list[int] = field(default_factory=list)        # E1/E2, practice policies only
    inner_sweep: list[int] = field(default_factory=list)        # E2, practice policies only
    estimator_sweep: list[str] = field(default_factory=list)    # E2, practice policies only
    clip_sweep: list[float] = field(default_factory=list)       # E2, practice policies only
    groups_sweep: list[int] = field(default_factory=list)       # E5 R4: groups per question (m)
    lr_sweep: list[float] = field(default_factory=list)         # E4: effective beta per learning rate (trl)
    advantage_sweep: list[str] = field(default_factory=list)    # E6: advantage estimators (conf/estimator/)
    sign_sweep: list[int] = field(default_factory=list)         # C2: [1] runs the modarith task with signed answers
    # per policy, where it differs from the above: its variants, and which of its sweeps it runs
    # (e.g. the transformer is costly: fewer variants, only the beta sweep at default scale)
    variants_of: dict[str, list[str]] = field(default_factory=dict)
    sweeps_of: dict[str, list[str]] = field(default_factory=dict)
    # per policy and sweep, its own values where not the study's list (``<sweep>`` -> its values_field above):
    # {transformer: {estimator: [dr_grpo, rloo, dapo]}} runs three estimators on the costly transformer, while
    # tabular_sgd runs all of advantage_sweep. It sets values only: sweeps_of still says which sweeps run
    sweep_values_of: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    # per policy and sweep, the base of that sweep where not ``sweep_variant``; it need not be one of the policy's
    # variants (trl: {lr: mean_std_mirror}, TRL's own beta = 0, whose runs then never enter C3's checks; its
    # estimator sweep stays around mean_std_ref)
    sweep_variant_of: dict[str, dict[str, str]] = field(default_factory=dict)
    seeds: int = 1  # repeats of every sampled policy's run (seed, seed + 1, ...): intervals over seeds
    # issue 20: task draws (draw 0 = the study's own task and pi_ref; draws 1 .. task_draws - 1 more of them, each its
    # own reference). Only the base variant (sweep_variant) of draw_policies runs on the other draws: draws.csv
    task_draws: int = 1
    draw_policies: list[str] = field(default_factory=list)
    # the families whose policies train all their runs in one job, one process (Snakemake rule train_<policy>):
    # start-up (torch, Hydra, the model's classes: 3-5 s a process) costs more than a table run's arithmetic and a
    # third of a CPU transformer run's; the others get a job per run (rule train: a GPU each at full scale)
    one_job_per_policy: list[str] = field(default_factory=lambda: ["tabular", "twin"])

    def __post_init__(self) -> None:
        _require(self.seeds >= 1, "scale.study.seeds", self.seeds, ">= 1")
        for family in self.one_job_per_policy:
            _require(family in registry.FAMILIES, "scale.study.one_job_per_policy", family,
                     "a policy family: " + ", ".join(registry.FAMILIES))
        _require(self.task_draws >= 1, "scale.study.task_draws", self.task_draws, ">= 1")
        for p in self.draw_policies:
            _require(p in registry.POLICIES, "scale.study.draw_policies", p, "one of " + ", ".join(registry.POLICIES))
        for p in [*self.policies, *self.variants_of, *self.sweeps_of]:
            _require(p in registry.POLICIES, "scale.study.policies", p, "one of " + ", ".join(registry.POLICIES))
        for where in ("sweeps_of", "sweep_values_of", "sweep_variant_of"):
            for p, sweeps in getattr(self, where).items():
                _require(p in registry.POLICIES, f"scale.study.{where}", p, "one of " + ", ".join(registry.POLICIES))
                for s in sweeps:
                    _require(s in registry.POLICIES[p].sweeps, f"scale.study.{where}.{p}", s,
                             "one of that policy's sweeps: " + ", ".join(registry.POLICIES[p].sweeps))
        for p, values_of in self.sweep_values_of.items():
            for s, values in values_of.items():
                _check_sweep_values(f"scale.study.sweep_values_of.{p}.{s}", s, values)
        _check_sweep_values("scale.study.advantage_sweep", "estimator", self.advantage_sweep)
        _check_sweep_values("scale.study.sign_sweep", "plus_sign", self.sign_sweep)


@dataclass
class ScaleConfig:
    name: str = "default"
    study: StudyConfig = field(default_factory=StudyConfig)


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///results/mlflow.db"  # a server URI (http://host:5000) works the same
    enabled: bool = True
    # live: train opens its MLflow run and logs each iteration as it goes (worth it for long GPU
    # runs). Otherwise compare creates every run at the end, in one process: each job is ~2 s
    # lighter and parallel jobs never contend for the SQLite file.
    live: bool = False


@dataclass
class RuleFiles:
    """The files a Snakemake rule hands to its stage, by role (None: the standard path of grpo_amp.paths)."""
    train: Optional[str] = None
    pos: Optional[str] = None
    predict: Optional[str] = None
    curves: Optional[str] = None
    runs: Optional[str] = None
    ladder: Optional[str] = None
    reference: Optional[str] = None  # the twin's reference rule reads the transformer's reference directory
    factorial: Optional[str] = None
    attribution: Optional[str] = None
    iterations: Optional[str] = None
    claims_csv: Optional[str] = None
    claims_md: Optional[str] = None
    draws: Optional[str] = None
    tracking: Optional[str] = None
    study_run: Optional[str] = None  # compare writes the study's MLflow run id here; figures reads it
    # Lists a rule hands over (compare, figures, a train_<policy> job): run i is run_names[i]
    # ("policy/run"), its pi_ref directory references[i], its predict CSV predict_files[i], its curves CSV
    # curves_files[i], its train directory train_dirs[i] and pos CSV pos_files[i]; draw run j is
    # draw_run_names[j] with draw_predict_files[j]; outputs.figures in registry.FIGURE_NAMES order.
    run_names: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    predict_files: list[str] = field(default_factory=list)
    curves_files: list[str] = field(default_factory=list)
    train_dirs: list[str] = field(default_factory=list)
    pos_files: list[str] = field(default_factory=list)
    draw_run_names: list[str] = field(default_factory=list)
    draw_predict_files: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


@dataclass
class AuditConfig:
    """Checking a finished GRPO run (``--config audit="..."``, grpo_amp.audit): its checkpoints against C3.

    ``base`` is pi_ref (also policy.checkpoint); ``checkpoints`` is one TRL-style output_dir (its
    ``checkpoint-<step>`` folders, read in step order) or an explicit list of checkpoint folders in step order.
    """
    base: str = ""
    checkpoints: list[str] = field(default_factory=list)
    # optimiser steps per theory iteration (one generation round); null: grpo.inner_steps (TRL's mu, with
    # steps_per_generation = 1). Sets the nominal iteration count n_j = step_j / steps_per_iteration.
    steps_per_iteration: Optional[int] = None
    max_iterations_per_interval: int = 32  # E4's fit searches 1..this many theory iterations per checkpoint interval
    max_batch: int = 4096  # sequences per generate call (questions x samples are split to fit)
    backend: str = "auto"  # auto: vLLM on CUDA where importable, else Hugging Face generate; hf: always HF

    def __post_init__(self) -> None:
        _require(self.steps_per_iteration is None or self.steps_per_iteration >= 1, "audit.steps_per_iteration",
                 self.steps_per_iteration, ">= 1 or null")
        _require(self.max_iterations_per_interval >= 1, "audit.max_iterations_per_interval",
                 self.max_iterations_per_interval, ">= 1")
        _require(self.max_batch >= 1, "audit.max_batch", self.max_batch, ">= 1")
        _require(self.backend in ("auto", "hf", "vllm"), "audit.backend", self.backend, "auto, hf or vllm")


@dataclass
class Config:
    variant: VariantConfig = field(default_factory=VariantConfig)
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    seed: int = 0
    run_name: str = ""    # the Snakemake ``{run}`` wildcard, e.g. mean_std_ref-beta0.5
    results: str = "results"  # root of results/{scale}/...
    workers: int = 1  # processes a stage may use for independent items (compare, figures: the rule's threads)
    # the files the rule names (``outputs.pos=results/smoke/pos/...``); a stage run by hand falls back
    # to the standard paths of grpo_amp.paths (stages.common.input_path / output_path)
    inputs: RuleFiles = field(default_factory=RuleFiles)
    outputs: RuleFiles = field(default_factory=RuleFiles)

    @property
    def advantage(self) -> estimators.Estimator:
        """The run's advantage estimator, resolved against the variant (``grpo`` is the variant's own)."""
        v = self.variant
        return estimators.resolve(self.estimator.name.value, v.norm.value, v.std.value, v.eps)

    def __post_init__(self) -> None:
        _require(not self.run_name or re.fullmatch(registry.RUN_PATTERN, self.run_name) is not None, "run_name",
                 self.run_name, registry.RUN_SYNTAX)
        spec = estimators.spec(self.estimator.name.value)
        k = spec.pass_k
        _require(k is None or k < self.grpo.group_size, "estimator.name", self.estimator.name.value,
                 f"an estimator whose pass_k ({k}) is < grpo.group_size ({self.grpo.group_size})")
        if spec.max_redraws is not None:
            # a row with its own cap (dapo_uncapped): the sweep sets estimator.name alone, so the default cap is
            # replaced here and run.json records the cap the run used; another explicit cap is a contradiction
            _require(self.estimator.max_redraws in (EstimatorConfig.max_redraws, spec.max_redraws),
                     "estimator.max_redraws", self.estimator.max_redraws,
                     f"{spec.max_redraws} with estimator {spec.name} (its own cap; estimator=dapo takes any cap)")
            self.estimator.max_redraws = spec.max_redraws
        _require(self.workers >= 1, "workers", self.workers, "an integer >= 1")
        tasks = registry.FAMILIES[self.policy.family].tasks
        _require(self.task.name in tasks, "task", self.task.name, f"{' or '.join(tasks)} for policy={self.policy.name.value}")
        if self.task.name in OPEN_ENDED_TASKS:
            # a file's answers are open-ended: they cannot be listed, so PoS can only be counted from samples
            if self.policy.pos_method == PosMethod.exact:
                self.policy.pos_method = PosMethod.mc
            _require(bool(self.policy.checkpoint), "policy.checkpoint", self.policy.checkpoint,
                     f"a local Hugging Face model directory with task={self.task.name} (nothing is trained from "
                     "scratch for open-ended questions)")


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore; each conf/<group>/*.yaml names its schema in defaults."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="variant", name="variant_schema", node=VariantConfig)
    cs.store(group="estimator", name="estimator_schema", node=EstimatorConfig)
    cs.store(group="policy", name="policy_schema", node=PolicyConfig)
    cs.store(group="task", name="task_schema", node=TaskConfig)
    cs.store(group="scale", name="scale_schema", node=ScaleConfig)
    cs.store(group="grpo", name="grpo_schema", node=GRPOConfig)
    # the twin task has no knobs of its own: its questions are the transformer's (stages.reference._twin)
    cs.store(group="task", name="twin", node={"defaults": ["task_schema"], "name": "twin"})
    for spec in registry.POLICY_TABLE:  # policy=<name>: the registry entry, with its task and GRPO preset
        cs.store(group="policy", name=spec.name, node={
            "defaults": ["policy_schema", {"override /task@_global_.task": registry.FAMILIES[spec.family].tasks[0]},
                         {"override /grpo@_global_.grpo": spec.grpo}],
            "name": spec.name, "pos_method": spec.pos_method})


def to_config(cfg: DictConfig) -> Config:
    """The typed config; range errors raise ConfigError (a ValueError) naming the field."""
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, Config):
        raise ConfigError("the composed config does not follow the Config schema")
    return obj


def flatten(cfg: Config) -> dict[str, Any]:
    """Dotted keys (``variant.beta``, ``grpo.group_size``) for MLflow params."""
    node = OmegaConf.structured(cfg)
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = value

    walk("", OmegaConf.to_container(node, enum_to_str=True))
    # the study is the scale's, not the run's; the rule's file names are paths, not settings
    return {k: v for k, v in out.items() if not k.startswith(("scale.study", "inputs.", "outputs.", "audit."))
            and k not in {f"task.{f}" for f in REASONING_GYM_FIELDS if cfg.task.name != "reasoning_gym"}}


def compose_config(overrides: list[str] | None = None) -> Config:
    """Compose ``conf/config.yaml`` with Hydra overrides outside of @hydra.main (tests, CLI)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return to_config(compose("config", overrides=list(overrides or [])))
