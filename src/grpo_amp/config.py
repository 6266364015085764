"""Structured configs: the schema behind every YAML file in ``conf/``.

Hydra composes ``conf/config.yaml`` against these dataclasses, so a wrong type or an unknown
enum value fails at compose time with the field's name; ``to_config`` then builds the
dataclasses, whose ``__post_init__`` checks ranges (beta > 0, G >= 2, ...) with the field's name.

    from hydra import compose, initialize_config_dir
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = to_config(compose("config", ["policy=tabular_sgd", "variant=mean_only_ref"]))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


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
    exact = "exact"  # sum over the output set (tabular) / over the vocabulary at each token (transformer)
    k1 = "k1"        # log pi - log q on the sampled tokens
    k3 = "k3"        # Schulman's low-variance estimator, as in DeepSeekMath's GRPO


class RatioLevel(str, Enum):
    sequence = "sequence"  # pi(o|q)/pi_old(o|q): the ratio of THEORY.md's C1
    token = "token"        # per-token ratios, as in PPO/TRL


class LossAgg(str, Enum):
    token_mean = "token_mean"        # sum over all tokens / number of tokens (DAPO, TRL's default)
    sequence_mean = "sequence_mean"  # mean over each sequence, then over sequences (original GRPO)


class PolicyName(str, Enum):
    tabular_exact = "tabular_exact"
    tabular_sgd = "tabular_sgd"
    transformer = "transformer"


class PosMethod(str, Enum):
    exact = "exact"
    mc = "mc"


def _require(cond: bool, name: str, value: Any, what: str) -> None:
    if not cond:
        raise ValueError(f"{name} must be {what}; got {value!r}")


@dataclass
class VariantConfig:
    """A named GRPO variant (``conf/variant/<name>.yaml``): normalisation x KL target, with its strengths."""
    name: str = "mean_std_ref"
    norm: Norm = Norm.mean_std
    kl: KLTarget = KLTarget.ref
    beta: float = 1.0
    beta_prev: float = 0.0  # strength of KL(pi || pi_{n-1}) for kl=both
    eps: float = 0.0        # inside the sqrt, as in THEORY.md: A = (r - p)/sqrt(p(1-p) + eps)
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


@dataclass
class GRPOConfig:
    """The knobs of one GRPO run (E2 sweeps these)."""
    iterations: int = 10
    group_size: int = 8
    inner_steps: int = 4
    lr: float = 0.1
    clip_eps: Optional[float] = None  # None: no clipping (THEORY.md's unclipped C1)
    kl_estimator: KLEstimator = KLEstimator.exact
    ratio_level: RatioLevel = RatioLevel.sequence
    loss_agg: LossAgg = LossAgg.token_mean
    reset_optimizer: bool = True  # each iteration solves its own problem (C2), as the theory assumes
    c1_groups: int = 16  # fresh groups per question for the C1 effective-loss check

    def __post_init__(self) -> None:
        _require(self.iterations >= 1, "grpo.iterations", self.iterations, ">= 1")
        _require(self.group_size >= 2, "grpo.group_size", self.group_size, ">= 2 (a group of 1 has no baseline)")
        _require(self.inner_steps >= 1, "grpo.inner_steps", self.inner_steps, ">= 1")
        _require(self.lr > 0, "grpo.lr", self.lr, "> 0")
        _require(self.clip_eps is None or self.clip_eps > 0, "grpo.clip_eps", self.clip_eps, "> 0 or null")
        _require(self.c1_groups >= 1, "grpo.c1_groups", self.c1_groups, ">= 1")


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
    family: str = "tabular"  # names results/{scale}/reference/{family}/
    pos_method: PosMethod = PosMethod.exact
    mc_samples: int = 256      # per question, for pos_method=mc and the exact-vs-mc cross-check
    save_checkpoints: bool = True  # per-iteration states; the pos rule measures from them
    device: str = "auto"       # auto: cuda when available
    # a local HF causal-LM directory (with its tokenizer) to start from instead of our pi_ref; "" = ours
    checkpoint: str = ""
    # sampling temperature of practice runs (policy=trl) and of their Monte Carlo PoS; the theory's pi is
    # the sampling distribution, so a value != 1 tests the tempered policy, not the saved one
    temperature: float = 1.0
    model: ModelConfig = field(default_factory=ModelConfig)
    reference: ReferenceTrainingConfig = field(default_factory=ReferenceTrainingConfig)

    def __post_init__(self) -> None:
        _require(self.family in ("tabular", "transformer"), "policy.family", self.family, "tabular or transformer")
        _require(self.mc_samples >= 1, "policy.mc_samples", self.mc_samples, ">= 1")
        _require(self.temperature > 0, "policy.temperature", self.temperature, "> 0")


@dataclass
class TaskConfig:
    """The verifiable task (``conf/task/``): tabular outputs or modular arithmetic."""
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
    noise_a: float = 1.0
    noise_b: float = 1.0
    # file: questions from JSON lines or parquet (tasks/file_task.py); "" = the shipped tasks/data/arith.jsonl
    path: str = ""
    prompt_field: str = "question"
    answer_field: str = "answer"
    split_field: str = ""        # optional; values train / heldout (test, validation -> heldout)
    verifier: str = "numeric"    # exact | numeric (GSM8K "#### 42") | math_verify (if installed)
    max_new_tokens: int = 16     # completion budget (the paper's appendix: 200)

    def __post_init__(self) -> None:
        _require(self.name in ("tabular", "modarith"), "task.name", self.name, "tabular or modarith")
        _require(self.n_train >= 1, "task.n_train", self.n_train, ">= 1")
        _require(self.n_heldout >= 0, "task.n_heldout", self.n_heldout, ">= 0")
        _require(self.n_outputs >= 2, "task.n_outputs", self.n_outputs, ">= 2")
        _require(0 < self.p_ref_low < self.p_ref_high < 1, "task.p_ref_low/p_ref_high",
                 (self.p_ref_low, self.p_ref_high), "0 < low < high < 1")
        _require(self.modulus >= 2, "task.modulus", self.modulus, ">= 2")
        _require(self.noise_a > 0 and self.noise_b > 0, "task.noise_a/noise_b", (self.noise_a, self.noise_b), "> 0")


@dataclass
class StudyConfig:
    """Which runs a scale makes (read by the Snakefile through ``grpo_amp.runs``)."""
    policies: list[str] = field(default_factory=lambda: ["tabular_exact", "tabular_sgd"])
    variants: list[str] = field(default_factory=lambda: ["mean_std_ref"])
    sweep_variant: str = "mean_std_ref"  # the base of every sweep
    beta_sweep: list[float] = field(default_factory=list)       # C7
    group_sweep: list[int] = field(default_factory=list)        # E1/E2, practice policies only
    inner_sweep: list[int] = field(default_factory=list)        # E2, practice policies only
    estimator_sweep: list[str] = field(default_factory=list)    # E2, practice policies only
    clip_sweep: list[float] = field(default_factory=list)       # E2, practice policies only
    transformer_variants: list[str] = field(default_factory=list)  # the transformer's subset (costly)
    transformer_sweeps: list[str] = field(default_factory=list)    # which SWEEPS the transformer runs


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
class Config:
    variant: VariantConfig = field(default_factory=VariantConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = 0
    run_name: str = ""    # the Snakemake ``{variant}`` wildcard, e.g. mean_std_ref-beta0.5
    results: str = "results"  # root of results/{scale}/...
    inputs: list[str] = field(default_factory=list)   # set by the rule: files it reads
    outputs: list[str] = field(default_factory=list)  # set by the rule: files it writes

    def __post_init__(self) -> None:
        wanted = {"tabular": "tabular", "transformer": "modarith"}[self.policy.family]
        _require(self.task.name == wanted, "task", self.task.name, f"{wanted} for policy={self.policy.name.value}")


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore; each conf/<group>/*.yaml names its schema in defaults."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="variant", name="variant_schema", node=VariantConfig)
    cs.store(group="policy", name="policy_schema", node=PolicyConfig)
    cs.store(group="task", name="task_schema", node=TaskConfig)
    cs.store(group="scale", name="scale_schema", node=ScaleConfig)


def to_config(cfg: DictConfig) -> Config:
    """The typed config; range errors raise ValueError naming the field."""
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, Config):
        raise ValueError("the composed config does not follow the Config schema")
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
    out.pop("inputs", None), out.pop("outputs", None), out.pop("scale.study", None)
    return {k: v for k, v in out.items() if not k.startswith("scale.study")}


def compose_config(overrides: list[str] | None = None) -> Config:
    """Compose ``conf/config.yaml`` with Hydra overrides outside of @hydra.main (tests, CLI)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return to_config(compose("config", overrides=list(overrides or [])))
