"""Our GRPO settings <-> TRL 1.16 GRPOConfig's, both ways, with the lines that say how.

    mapping = to_trl(cfg)              # TrlMapping: GRPOConfig kwargs, printable lines, flags
    print(format_mapping(mapping))     # goes into the train log
    overrides = from_trl({"beta": 0.1, "epsilon": 0.2, "num_iterations": 10, ...})  # our dotted keys

Imports nothing of TRL: the mapping is data, so it can be printed, checked and tested without it.
What TRL 1.16 computes (read from trl/trainer/grpo_trainer.py, ``_generate_and_score_completions``
and ``_compute_loss``):
- advantage A = (r - group mean) / (group sample std + 1e-4): eps OUTSIDE the root, Bessel's
  correction (trl.trainer.utils.nanstd); scale_rewards="none" keeps r - mean; "batch" divides by the
  nanstd of every reward of the generation batch (+ 1e-4). Our estimators (grpo_amp.estimators) map onto
  these as data, ``TRL_ESTIMATORS``; the prediction reads the estimator row of what TRL computes.
- KL: per-token k3 to pi_ref, exp(ref - logp) - (ref - logp) - 1, times beta; with
  use_bias_correction_kl it is multiplied by the (differentiable) token ratio pi/pi_old, which makes
  its gradient the unbiased gradient of the reverse KL (DeepSeek-V3.2); beta = 0 loads no pi_ref.
- clipped token ratios, min(ratio A, clip(ratio, 1 - epsilon, 1 + epsilon) A); "dapo" divides by the
  tokens of the generation batch (= our token_mean at one step per generation), "grpo" averages per
  sequence then over sequences (= our sequence_mean).
Settings with no theory counterpart are refused with one line (InputError), never silently mapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from grpo_amp import estimators
from grpo_amp.config import Config
from grpo_amp.io import InputError

TRL_ADV_EPS = 1e-4   # TRL 1.16 grpo_trainer.py: advantages / (std_rewards + 1e-4), not configurable
NO_CLIP = 1e9        # TRL always clips; ratios are finite and positive, so [1 - 1e9, 1 + 1e9] never binds

LOSS_TYPES = {"token_mean": "dapo", "sequence_mean": "grpo"}
SCALE_REWARDS = {"mean_std": "group", "mean_only": "none"}


@dataclass(frozen=True)
class TrlEstimator:
    """One of our estimators in TRL 1.16's terms, or why TRL cannot compute it (``refused``).

    ``weights``: the grpo_amp.estimators row of the advantage TRL then computes (its theory kwargs are the
    prediction's); None in scale_rewards / loss_type / weights: from variant.norm / grpo.loss_agg (``grpo``).
    """
    scale_rewards: str | None = None
    loss_type: str | None = None
    weights: str | None = None
    note: str = ""
    refused: str = ""


# What TRL 1.16 computes, read from trl/trainer/grpo_trainer.py: GRPOTrainer._generate_and_score_completions
# (advantages = rewards - group mean; std_rewards = nanstd per group ("group", "none": logging only) or of the
# whole batch ("batch"); advantages / (std_rewards + 1e-4) unless "none") and GRPOTrainer._compute_loss
# ("dr_grpo": (per_token_loss * mask).sum() / (B * max_completion_length)); grpo_config.py lists the choices.
TRL_ESTIMATORS = {
    "grpo": TrlEstimator(note="the variant's own normalisation: variant.norm picks scale_rewards"),
    "trl_default": TrlEstimator("group", None, "trl_default", "TRL's default: (r - mean)/(group sample std + 1e-4)"),
    "dr_grpo": TrlEstimator(
        "none", "dr_grpo", "dr_grpo",
        "A = r - group mean (Dr. GRPO). loss_type='dr_grpo' divides the batch's token sum by B x "
        "max_completion_length (T = task.max_new_tokens), a constant: each output's token terms are summed, not "
        "averaged over its own length. At our <= T-token outputs that is loss_type='grpo' times |o|/T (equal when "
        "every output has T tokens) and a constant scale of the loss, which Adam's step does not see: the "
        "prediction is Dr. GRPO's S_G, constant in p (no adaptation to p_(n-1), C5)"),
    "batch": TrlEstimator(
        "batch", None, "batch",
        "A = (r - group mean)/(sigma_b + 1e-4), sigma_b = nanstd of all Q x G rewards of the generation batch "
        "(Bessel over Q x G): predicted with sigma_b = sqrt(pbar (1 - pbar)) of the train questions' PoS, its "
        "expectation without the factor sqrt(QG/(QG - 1))"),
    "verl": TrlEstimator(refused="verl divides by the sample std + 1e-6; TRL's 1e-4 is hard-coded (no setting)"),
    "rloo": TrlEstimator(refused="GRPOTrainer has no leave-one-out baseline (RLOO is TRL's separate RLOOTrainer)"),
    "dapo": TrlEstimator(refused="GRPOTrainer has no dynamic sampling (TRL issue #3708); its loss_type='dapo' is "
                                 "DAPO's token-mean loss only"),
    "dapo_uncapped": TrlEstimator(refused="GRPOTrainer has no dynamic sampling (TRL issue #3708), capped or not"),
    "pass_k": TrlEstimator(refused="GRPOTrainer has no pass@k reward over k-subsets"),
}
assert set(TRL_ESTIMATORS) == set(estimators.ESTIMATORS), "every estimator has a TRL row"


def trl_estimator(name: str) -> TrlEstimator:
    """TRL's row for estimator ``name``; InputError (one line, naming estimator.name) where TRL cannot compute it."""
    row = TRL_ESTIMATORS.get(name)
    if row is None:
        raise InputError(f"estimator.name={name!r} is not an estimator (one of {', '.join(TRL_ESTIMATORS)})")
    if row.refused:
        raise InputError(f"policy=trl: estimator.name={name} has no TRL 1.16 counterpart: {row.refused}")
    return row


def computed_estimator(name: str, norm: str) -> str:
    """The estimator whose advantage TRL computes when run with our estimator ``name`` under variant.norm ``norm``
    (``grpo``, the variant's own: scale_rewards from the norm, so trl_default or dr_grpo)."""
    row = TRL_ESTIMATORS[name]
    return row.weights or {"group": "trl_default", "none": "dr_grpo"}[SCALE_REWARDS[norm]]


def _weights(name: str) -> dict:
    """theory.finite_group_weights kwargs of estimator ``name``'s row, less sigma_b (the prediction fills it in
    from the measured PoS: analysis.predict.batch_std)."""
    e = estimators.resolve(name)
    return dict(norm=e.norm, eps=e.eps, std=e.std, eps_inside=e.eps_inside, dynamic_sampling=e.dynamic_sampling,
                pass_k=e.pass_k)

# TRL settings that have no counterpart in the theory, with the value that switches them off
UNSUPPORTED_TRL = {"entropy_coef": 0.0, "use_adaptive_entropy": False, "top_entropy_quantile": 1.0,
                   "mask_truncated_completions": False, "off_policy_mask_threshold": None, "delta": None,
                   "epsilon_high": None, "top_p": 1.0, "top_k": 0, "min_p": None, "repetition_penalty": 1.0,
                   "importance_sampling_level": "token", "multi_objective_aggregation": "sum_then_normalize"}


@dataclass(frozen=True)
class TrlMapping:
    """What TRL is told, what that means for the theory, and the lines that say so."""
    kwargs: dict                      # GRPOConfig keyword arguments for the GRPO settings
    lines: list[str]                  # ours -> TRL, one setting a line, for the train log
    explicit_ref_penalty: bool        # False (TRL beta = 0): C3 under kl=ref does not apply; fit E4 under kl=mirror
    theory_weights: dict = field(default_factory=dict)  # finite_group_weights kwargs for TRL's advantage
    temperature: float = 1.0          # != 1: TRL trains and samples pi^(1/T), not the pi of the theory


def to_trl(cfg: Config) -> TrlMapping:
    """Map ``cfg`` onto TRL's GRPOConfig; InputError (one line) where TRL cannot express it."""
    v, g = cfg.variant, cfg.grpo
    kl, norm = v.kl.value, v.norm.value
    if kl == "both":
        raise InputError("policy=trl: variant.kl=both has no TRL counterpart (TRL penalises KL to pi_ref only)")
    if g.ratio_level.value == "sequence":
        raise InputError("policy=trl: grpo.ratio_level=sequence has no TRL counterpart (TRL's 'sequence' level is "
                         "GSPO's length-normalised ratio, not pi(o|q)/pi_old(o|q)); use grpo.ratio_level=token")
    if kl == "ref" and g.kl_estimator.value == "k1":
        raise InputError("policy=trl: grpo.kl_estimator=k1 has no TRL counterpart (TRL uses k3); use k3 or full_vocab")
    name = cfg.estimator.name.value
    est = trl_estimator(name)
    scale_rewards = est.scale_rewards or SCALE_REWARDS[norm]
    loss_type = est.loss_type or LOSS_TYPES[g.loss_agg.value]
    computed = est.weights or {"group": "trl_default", "none": "dr_grpo"}[scale_rewards]  # the row TRL computes
    temperature = float(getattr(cfg.policy, "temperature", 1.0))
    beta = float(v.beta) if kl == "ref" else 0.0
    bias_correction = g.kl_estimator.value == "full_vocab"
    kwargs = {
        "beta": beta,
        "use_bias_correction_kl": bias_correction,
        "scale_rewards": scale_rewards,
        "loss_type": loss_type,
        "epsilon": NO_CLIP if g.clip_eps is None else float(g.clip_eps),
        "num_iterations": int(g.inner_steps),
        "num_generations": int(g.group_size),
        "learning_rate": float(g.lr),
        "temperature": temperature,
        **UNSUPPORTED_TRL,
    }
    lines = [
        (f"  variant.norm={norm} -> scale_rewards={scale_rewards!r}: TRL's advantage is "
         + ("(r - mean)/(sample std + 1e-4), eps OUTSIDE the root; variant.std/eps "
            f"({v.std.value}, {v.eps:g}) are not used by TRL: predicted with the estimators row 'trl_default' "
            f"(sample std, eps={TRL_ADV_EPS:g} outside)"
            if norm == "mean_std" else "r - mean (Dr. GRPO)")
         if name == "grpo" else
         f"  estimator.name={name} -> scale_rewards={scale_rewards!r}, loss_type={loss_type!r}: {est.note}; "
         f"variant.norm/std/eps are not used; predicted with the estimators row {computed!r}"),
        (f"  variant.kl=ref, beta={v.beta:g} -> beta={beta:g} with TRL's per-token k3 to pi_ref"
         if kl == "ref" else
         f"  variant.kl=mirror -> beta=0: TRL has no explicit KL(pi || pi_(n-1)); the learning rate and clipping "
         f"are the only pull towards pi_(n-1), so variant.beta={v.beta:g} is not applied: it is what E4 fits. "
         "C3 under kl=ref does not apply to this run"),
        f"  grpo.kl_estimator={g.kl_estimator.value} -> use_bias_correction_kl={bias_correction}"
        + (" (k3 x token ratio: unbiased reverse-KL gradient)" if bias_correction else " (plain k3)")
        + ("" if beta else " (unused: beta = 0)"),
        (f"  grpo.loss_agg={g.loss_agg.value} -> loss_type={loss_type!r}" if est.loss_type is None else
         f"  grpo.loss_agg={g.loss_agg.value} not used: estimator.name={name} sets loss_type={loss_type!r}")
        + "; grpo.ratio_level=token -> importance_sampling_level='token'",
        f"  grpo.clip_eps={g.clip_eps} -> epsilon={kwargs['epsilon']:g}"
        + (" (TRL always clips: a bound that never binds)" if g.clip_eps is None else ""),
        f"  grpo.inner_steps={g.inner_steps} -> num_iterations={g.inner_steps} (mu): one generation round = one "
        "theory iteration = mu optimiser steps on the same groups",
        f"  grpo.group_size={g.group_size} -> num_generations={g.group_size}; grpo.lr={g.lr:g} -> learning_rate, "
        "constant, adamw_torch with weight_decay=0 (Adam, as ours), max_grad_norm=0",
        f"  grpo.reset_optimizer={g.reset_optimizer} -> "
        + ("Adam's moments cleared at the end of every round (each iteration its own problem, as ours)"
           if g.reset_optimizer else "one Adam for the whole run (TRL's own behaviour)"),
        f"  policy.temperature={temperature:g} -> temperature={temperature:g}"
        + ("" if temperature == 1.0 else f": NOT 1, so TRL samples and trains pi^(1/{temperature:g}); the theory's "
           "pi is the sampling distribution, so this tests a different policy than the one saved"),
        "  off: entropy_coef=0, top_entropy_quantile=1, mask_truncated_completions, off_policy_mask_threshold, "
        "delta, epsilon_high, top_p/top_k/min_p, repetition_penalty (no theory counterpart)",
    ]
    return TrlMapping(kwargs, lines, explicit_ref_penalty=beta > 0, theory_weights=_weights(computed),
                      temperature=temperature)


def finite_group_advantage(cfg: Config) -> dict:
    """finite_group_weights kwargs (norm, std, eps, eps_inside, ...) of the advantage TRL computes for ``cfg``:
    the estimators row of TRL_ESTIMATORS' ``weights`` (trl_default for scale_rewards='group', dr_grpo for 'none',
    batch for 'batch'), less sigma_b."""
    return to_trl(cfg).theory_weights


def format_mapping(mapping: TrlMapping) -> str:
    head = "TRL GRPOConfig from ours (ours -> TRL):"
    flag = ("explicit_ref_penalty=True: C3 under kl=ref applies" if mapping.explicit_ref_penalty else
            "explicit_ref_penalty=False: TRL beta = 0, C3 under kl=ref does not apply; fit E4 under kl=mirror")
    return "\n".join([head, *mapping.lines, f"  {flag}"])


def from_trl(settings: dict) -> dict:
    """TRL GRPOConfig settings (a dict; missing keys take TRL 1.16's defaults) -> our dotted config overrides.

    InputError (one line) for a TRL setting the theory has no counterpart for. scale_rewards="batch", and "none"
    with loss_type="dr_grpo", are estimators (``estimator.name``: TRL_ESTIMATORS read backwards).
    """
    s = {"beta": 0.0, "scale_rewards": "group", "loss_type": "dapo", "epsilon": 0.2, "num_iterations": 1,
         "use_bias_correction_kl": True, "temperature": 1.0, **UNSUPPORTED_TRL, **settings}
    for name, off in UNSUPPORTED_TRL.items():
        value = s[name]
        if name == "epsilon_high" and value is not None and value == s["epsilon"]:
            continue  # symmetric clipping spelled out
        if value != off:
            raise InputError(f"TRL setting {name}={value!r} has no theory counterpart (only {off!r} maps)")
    scale = {True: "group", False: "none"}.get(s["scale_rewards"], s["scale_rewards"])
    # an estimator row whose TRL settings these are (dr_grpo: none + loss_type dr_grpo; batch), else grpo's
    estimator = next((name for name, row in TRL_ESTIMATORS.items() if name != "trl_default" and row.scale_rewards
                      and row.scale_rewards == scale and row.loss_type in (None, s["loss_type"])), None)
    if s["loss_type"] == "dr_grpo" and estimator != "dr_grpo":
        raise InputError(f"TRL setting loss_type='dr_grpo' with scale_rewards={s['scale_rewards']!r} has no theory "
                         "counterpart (only with scale_rewards='none': estimator dr_grpo)")
    norms = {b: a for a, b in SCALE_REWARDS.items()}
    if scale not in norms and estimator is None:
        raise InputError(f"TRL setting scale_rewards={s['scale_rewards']!r} has no theory counterpart "
                         "(group, none or batch map)")
    aggs = {"dapo": "token_mean", "bnpo": "token_mean", "grpo": "sequence_mean"}
    if s["loss_type"] not in aggs and estimator != "dr_grpo":
        raise InputError(f"TRL setting loss_type={s['loss_type']!r} has no theory counterpart "
                         "(dapo, bnpo, grpo or, with scale_rewards='none', dr_grpo map)")
    beta = float(s["beta"])
    out = {"variant.norm": norms.get(scale, "mean_std"),
           "variant.kl": "ref" if beta > 0 else "mirror",
           **({"estimator.name": estimator} if estimator in ("dr_grpo", "batch") else {}),
           **({"grpo.loss_agg": aggs[s["loss_type"]]} if s["loss_type"] in aggs else {}), "grpo.ratio_level": "token",
           "grpo.clip_eps": None if float(s["epsilon"]) >= NO_CLIP else float(s["epsilon"]),
           "grpo.inner_steps": int(s["num_iterations"]),
           "policy.temperature": float(s["temperature"])}
    if beta > 0:
        out["variant.beta"] = beta
        out["grpo.kl_estimator"] = "full_vocab" if s["use_bias_correction_kl"] else "k3"
    if "num_generations" in s:
        out["grpo.group_size"] = int(s["num_generations"])
    if "learning_rate" in s:
        out["grpo.lr"] = float(s["learning_rate"])
    return out
