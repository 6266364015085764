"""One table of the GRPO family's advantage estimators (docs/theory.md E6): what a run computes.

    from grpo_amp.estimators import ESTIMATORS, resolve
    est = resolve("trl_default", variant_norm="mean_std", variant_std="population", variant_eps=0.0)
    est.loss_kwargs()                # -> grpo.loss.group_advantages(rewards, **...): the trainer's A
    est.theory_kwargs(group_size=8)  # -> theory.finite_group_weights / predict: the prediction's S_G

Both the trainer's advantage and the prediction read the same ``Estimator``, so they cannot disagree.
``grpo`` is the variant's own advantage (the paper's, with the variant's norm, std and eps): the
default, today's behaviour. Every other entry names its advantage wholly (the variant's norm, std and
eps are not used). Ground layer: no torch, no pandas, nothing of ours.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EstimatorSpec:
    """A row of the table. ``None`` in norm/std/eps: the variant's value (only ``grpo``)."""
    name: str
    norm: str | None           # mean_std | mean_only | rloo
    std: str | None            # population | sample (Bessel, as torch.std)
    eps: float | None
    eps_inside: bool           # sqrt(var + eps) (the paper's) or sqrt(var) + eps (TRL, verl)
    dynamic_sampling: bool     # DAPO: redraw groups whose rewards are all equal
    batch: bool                # TRL scale_rewards="batch": one std over the whole generation batch
    pass_k: int | None         # pass@k max reward over k-subsets
    label: str
    source: str
    # the row's own redraw cap (dynamic sampling only); None: the config's estimator.max_redraws (16, verl's default)
    max_redraws: int | None = None


# dapo_uncapped's cap: drawing again until the group has spread ends after a Geometric(Z) number of tries, so a
# cap R drops a question with probability (1 - Z)^(R + 1): below 1e-20 for every p in [0.0064, 0.9936]
# (Z >= 0.05 at G = 8), far wider than the PoS the table's practice runs reach (0.02..0.99 at smoke and
# default, at most 30 redraws measured). A cap stays: at p = 0 or 1 exactly the redraws would never end.
UNCAPPED_REDRAWS = 1000

ESTIMATOR_TABLE = (
    EstimatorSpec("grpo", None, None, None, True, False, False, None,
                  "the variant's (paper's) advantage", "Mroueh 2025; DeepSeekMath (Shao et al. 2024)"),
    # TRL 1.16 grpo_trainer.py: advantages / (std_rewards + 1e-4), std = nanstd (Bessel)
    EstimatorSpec("trl_default", "mean_std", "sample", 1e-4, False, False, False, None,
                  "TRL default: (r - mean)/(sample std + 1e-4)", "TRL GRPOTrainer scale_rewards='group'"),
    # verl core_algos.compute_grpo_outcome_advantage: scores / (std + epsilon), epsilon = 1e-6, torch.std
    EstimatorSpec("verl", "mean_std", "sample", 1e-6, False, False, False, None,
                  "verl GRPO: (r - mean)/(sample std + 1e-6)", "verl compute_grpo_outcome_advantage"),
    EstimatorSpec("dr_grpo", "mean_only", "population", 0.0, True, False, False, None,
                  "Dr. GRPO: r - group mean", "Liu et al. 2025; TRL scale_rewards='none'"),
    EstimatorSpec("rloo", "rloo", "population", 0.0, True, False, False, None,
                  "RLOO: r - mean of the other G-1", "Ahmadian et al. 2024; verl adv_estimator=rloo"),
    EstimatorSpec("batch", "mean_std", "sample", 1e-4, False, False, True, None,
                  "TRL batch: (r - group mean)/(batch std + 1e-4)", "TRL GRPOTrainer scale_rewards='batch'"),
    EstimatorSpec("dapo", "mean_std", "sample", 1e-6, False, True, False, None,
                  "DAPO: verl's advantage, equal-reward groups redrawn", "Yu et al. 2025 (dynamic sampling)"),
    # the theory's dynamic sampling (docs/theory.md E6): the same advantage, redrawn until spread (E6d, E6e)
    EstimatorSpec("dapo_uncapped", "mean_std", "sample", 1e-6, False, True, False, None,
                  f"DAPO without the cap: redrawn until spread (at most {UNCAPPED_REDRAWS} times)",
                  "Yu et al. 2025 (dynamic sampling); docs/theory.md E6", max_redraws=UNCAPPED_REDRAWS),
    EstimatorSpec("pass_k", "mean_std", "population", 0.0, True, False, False, 4,
                  "pass@4: best of each 4-subset, normalised over subsets", "Chen et al. 2025 (Pass@k training)"),
)
ESTIMATORS = {e.name: e for e in ESTIMATOR_TABLE}
ESTIMATOR_NAMES = tuple(ESTIMATORS)
DEFAULT = "grpo"


@dataclass(frozen=True)
class Estimator:
    """A resolved advantage estimator: what one run's trainer computes and its prediction assumes."""
    name: str
    norm: str
    std: str
    eps: float
    eps_inside: bool
    dynamic_sampling: bool
    batch: bool
    pass_k: int | None

    def loss_kwargs(self) -> dict:
        """Keywords of grpo.loss.group_advantages (dynamic sampling is the trainer's loop, not A)."""
        return dict(norm=self.norm, eps=self.eps, std=self.std, eps_inside=self.eps_inside, batch=self.batch,
                    pass_k=self.pass_k)

    def theory_kwargs(self, batch_std: float | None = None) -> dict:
        """Keywords of theory.finite_group_weights and what is built on it (pos_step, predict, ...).

        ``batch``: sigma_b, the std of the whole batch's rewards, replaces the group std: the caller
        gives it (the batch's sqrt(pbar (1 - pbar)); it couples the questions).
        """
        if self.batch and batch_std is None:
            raise ValueError(f"estimator {self.name!r} divides by the batch's std: give batch_std")
        return dict(norm=self.norm, eps=self.eps, std=self.std, eps_inside=self.eps_inside,
                    dynamic_sampling=self.dynamic_sampling, batch_std=batch_std if self.batch else None,
                    pass_k=self.pass_k)

    def population_kwargs(self, batch_std: float | None = None) -> dict | None:
        """theory keywords of the G -> infinity limit (group_size=None), or None for pass@k (its
        subsets need a finite group). Dynamic sampling drops out there (Z -> 1 for 0 < p < 1)."""
        if self.pass_k is not None:
            return None
        kw = self.theory_kwargs(batch_std)
        kw.update(dynamic_sampling=False, std="population", norm="mean_only" if self.norm == "rloo" else self.norm)
        return kw


def spec(name: str) -> EstimatorSpec:
    if name not in ESTIMATORS:
        raise ValueError(f"estimator.name must be one of {', '.join(ESTIMATORS)}; got {name!r}")
    return ESTIMATORS[name]


def resolve(name: str, variant_norm: str = "mean_std", variant_std: str = "population",
            variant_eps: float = 0.0) -> Estimator:
    """The estimator ``name`` for a run whose variant has (norm, std, eps): the table's row, with the
    variant's values where the row has None (``grpo``)."""
    s = spec(name)
    return Estimator(s.name, s.norm or variant_norm, s.std or variant_std,
                     float(variant_eps if s.eps is None else s.eps), s.eps_inside, s.dynamic_sampling,
                     s.batch, s.pass_k)
