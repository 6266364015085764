"""The GRPO objective as pure tensor functions, named as in docs/theory.md.

Shapes: Q questions, G outputs per question (a group), T completion tokens, V vocabulary.

    adv, zero_spread = group_advantages(rewards, norm="mean_std", eps=0.0, std="population")
    terms = grpo_loss(logq, old_logq, ref_logq, tokens, mask, adv, variant=cfg.variant, grpo=cfg.grpo)
    terms.loss.backward()

The objective maximised per iteration is docs/theory.md's (C1, C2)
    E_{o ~ pi_old}[ clip(pi/pi_old) * A ]  -  sum_j coef_j * KL(pi || target_j)
with the KL targets of the variant (``KL_TARGETS``) and the estimator of the run (``KL_ESTIMATORS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from grpo_amp.config import GRPOConfig, VariantConfig


# --------------------------------------------------------------------------- advantages
def _scale(centred, var, eps, eps_inside):
    if eps_inside:
        return centred / torch.sqrt(var + eps)  # the paper's sqrt(p(1-p) + eps)
    return centred / (torch.sqrt(var) + eps)    # TRL (1e-4), verl (1e-6): eps outside the root


def _mean_std(rewards, mean, eps, std, eps_inside=True, batch=False):
    if batch:  # TRL scale_rewards="batch": rewards.std() over the whole generation batch (Bessel)
        var = rewards.var(unbiased=True).expand(rewards.shape[0], 1)  # (Q, 1)
    else:
        var = rewards.var(dim=1, keepdim=True, unbiased=(std == "sample"))  # (Q, 1): q(1-q) or q(1-q)G/(G-1)
    return _scale(rewards - mean, var, eps, eps_inside)


def _mean_only(rewards, mean, eps, std, eps_inside=True, batch=False):
    return rewards - mean  # Dr. GRPO / TRL scale_rewards="none"


def _rloo(rewards, mean, eps, std, eps_inside=True, batch=False):
    G = rewards.shape[1]
    return rewards - (rewards.sum(dim=1, keepdim=True) - rewards) / (G - 1)  # mean of the other G-1 (RLOO)


NORMALISATIONS = {"mean_std": _mean_std, "mean_only": _mean_only, "rloo": _rloo}


def pass_k_advantages(rewards: torch.Tensor, k: int, norm: str = "mean_std", eps: float = 0.0,
                      eps_inside: bool = True) -> torch.Tensor:
    """pass@k (Chen et al. 2025): each k-subset scored by its best member, normalised over the
    C(G, k) subsets (population std); a response's advantage is the mean over the subsets holding it.

    In closed form from the group's n failures: mean subset reward R = 1 - C(n, k)/C(G, k); a success
    lies only in R_s = 1 subsets; a failure's subsets are all-failure with share C(n-1, k-1)/C(G-1, k-1).
    """
    G = rewards.shape[1]
    n_fail = (G - rewards.sum(dim=1, keepdim=True)).round()                # (Q, 1)

    def comb(n, r):  # C(n, r) for tensors n >= 0 (0 where n < r)
        out = torch.exp(torch.lgamma(n + 1) - torch.lgamma(torch.as_tensor(r + 1.0, dtype=n.dtype))
                        - torch.lgamma((n - r).clamp(min=0) + 1))
        return torch.where(n >= r, out, torch.zeros_like(out))

    r_bar = 1.0 - comb(n_fail, k) / math.comb(G, k)                          # (Q, 1)
    fail_share = comb(n_fail - 1, k - 1) / math.comb(G - 1, k - 1)           # (Q, 1)
    own = torch.where(rewards > 0, torch.ones_like(rewards), 1.0 - fail_share)  # mean R_s over i's subsets
    centred = own - r_bar
    if norm == "mean_only":
        return centred
    var = r_bar * (1.0 - r_bar)
    return torch.where(var > 0, _scale(centred, var, eps, eps_inside), torch.zeros_like(centred))


def group_advantages(rewards: torch.Tensor, norm: str = "mean_std", eps: float = 0.0,
                     std: str = "population", *, eps_inside: bool = True, batch: bool = False,
                     pass_k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A = (r - group mean) [/ scale]; a group with equal rewards gets A = 0.

    rewards: (Q, G). Returns the advantages (Q, G) and which groups had zero spread (Q,). The
    estimator's keywords are grpo_amp.estimators.Estimator.loss_kwargs() (docs/theory.md E6):
    ``norm`` mean_std | mean_only | rloo; ``eps_inside`` sqrt(var + eps) or std + eps; ``batch`` one
    std over all Q x G rewards; ``pass_k`` the pass@k reward.
    """
    mean = rewards.mean(dim=1, keepdim=True)  # (Q, 1): the group baseline, reshape -> reduce -> broadcast
    zero_spread = (rewards == rewards[:, :1]).all(dim=1)  # (Q,)
    with torch.no_grad():
        if pass_k is not None:
            adv = pass_k_advantages(rewards, pass_k, norm, eps, eps_inside)
        elif eps_inside and not batch:
            adv = NORMALISATIONS[norm](rewards, mean, eps, std)  # the paper's (and today's) path
        else:
            adv = NORMALISATIONS[norm](rewards, mean, eps, std, eps_inside, batch)
    return adv.masked_fill(zero_spread[:, None], 0.0), zero_spread


# --------------------------------------------------------------------------- log-probs and ratios
def token_logp(logq: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log pi(token_t | prefix): (Q, G, T) from next-token log-probs (Q, G, T, V)."""
    return torch.gather(logq, -1, tokens[..., None]).squeeze(-1)


def sequence_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum(dim=-1)  # (Q, G)


# --------------------------------------------------------------------------- KL estimators
def _k1(logp, target_logp, logq, target_logq):
    return logp - target_logp


def _k3(logp, target_logp, logq, target_logq):
    # k3 = r - 1 - log r with r = q/p: unbiased, non-negative, low variance.
    # Schulman, "Approximating KL Divergence" (2020); the form DeepSeekMath's GRPO uses.
    log_r = target_logp - logp
    return torch.exp(log_r) - 1.0 - log_r


def _full_vocab(logp, target_logp, logq, target_logq):
    # KL of the next-token distributions at each sampled prefix, summed over the whole vocabulary.
    # Tabular (T = 1): the exact KL(pi || target) and its exact gradient. For a sequence model it is
    # neither the sequence KL nor its gradient: the sequence KL is E_{prefix ~ pi}[per-token KL], and
    # the gradient through the prefix distribution (its score term) is dropped here; what is optimised
    # is the per-token KL at prefixes frozen to this round's samples. Hence "full_vocab", not "exact".
    return (logq.exp() * (logq - target_logq)).sum(dim=-1)


KL_ESTIMATORS = {"k1": _k1, "k3": _k3, "full_vocab": _full_vocab}

# the variant's KL penalty: (coefficient field of VariantConfig, which policy it pulls towards)
KL_TARGETS = {
    "ref": (("beta", "ref"),),
    "mirror": (("beta", "old"),),
    "both": (("beta", "ref"), ("beta_prev", "old")),
}


def per_token_kl(logq, target_logq, tokens, estimator: str) -> torch.Tensor:
    """(Q, G, T) per-token estimate of KL(pi || target) along the sampled sequences."""
    logp, target_logp = token_logp(logq, tokens), token_logp(target_logq, tokens)
    return KL_ESTIMATORS[estimator](logp, target_logp, logq, target_logq)


# --------------------------------------------------------------------------- aggregation
def _token_mean(x, mask):
    return (x * mask).sum() / mask.sum().clamp(min=1)  # every token weighs the same (DAPO, TRL "dapo")


def _sequence_mean(x, mask):
    per_seq = (x * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # (Q, G): each sequence weighs the same
    return per_seq.mean()


AGGREGATIONS = {"token_mean": _token_mean, "sequence_mean": _sequence_mean}


# --------------------------------------------------------------------------- the loss
@dataclass
class LossTerms:
    loss: torch.Tensor          # what backward() sees: -(objective) + KL penalty
    pg_objective: torch.Tensor  # the clipped surrogate E[min(ratio A, clip(ratio) A)]
    kl_ref: torch.Tensor        # estimated KL(pi || pi_ref) per sequence (0 if not penalised)
    kl_prev: torch.Tensor       # estimated KL(pi || pi_old) per sequence (0 if not penalised)
    clip_frac: torch.Tensor     # share of ratios outside [1 - clip_eps, 1 + clip_eps]


def clipped_surrogate(ratio: torch.Tensor, adv: torch.Tensor, clip_eps: float | None) -> torch.Tensor:
    unclipped = ratio * adv
    if clip_eps is None:
        return unclipped
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    return torch.minimum(unclipped, clipped)  # PPO's pessimistic bound


def grpo_loss(logq: torch.Tensor, old_logq: torch.Tensor, ref_logq: torch.Tensor, tokens: torch.Tensor,
              mask: torch.Tensor, adv: torch.Tensor, variant: VariantConfig, grpo: GRPOConfig) -> LossTerms:
    """The GRPO loss for one inner step.

    logq, old_logq, ref_logq: (Q, G, T, V) next-token log-probs of pi (with gradient), pi_old, pi_ref.
    tokens, mask: (Q, G, T); adv: (Q, G).

    ratio_level=sequence is docs/theory.md's C1: ratio pi(o|q)/pi_old(o|q), one term per sequence, KL
    summed over its tokens (the sequence KL). ratio_level=token is PPO/TRL's practice: per-token
    ratios and KL, aggregated by ``loss_agg``.
    """
    mask = mask.to(logq.dtype)
    logp, old_logp = token_logp(logq, tokens), token_logp(old_logq, tokens)  # (Q, G, T)
    targets = {"ref": ref_logq, "old": old_logq}
    kl = {"ref": torch.zeros_like(logp), "old": torch.zeros_like(logp)}
    penalty = torch.zeros_like(logp)
    for coef_field, target in KL_TARGETS[variant.kl.value]:
        kl[target] = per_token_kl(logq, targets[target], tokens, grpo.kl_estimator.value)  # (Q, G, T)
        penalty = penalty + getattr(variant, coef_field) * kl[target]

    if grpo.ratio_level.value == "sequence":
        log_ratio = sequence_sum(logp - old_logp, mask)  # (Q, G)
        ratio = torch.exp(log_ratio)
        pg = clipped_surrogate(ratio, adv, grpo.clip_eps)  # (Q, G)
        pg_objective = pg.mean()
        loss = -pg_objective + sequence_sum(penalty, mask).mean()
        clip_mask = torch.ones_like(ratio)
    else:
        ratio = torch.exp(logp - old_logp)  # (Q, G, T)
        pg = clipped_surrogate(ratio, adv[..., None], grpo.clip_eps)  # (Q, G, T)
        aggregate = AGGREGATIONS[grpo.loss_agg.value]
        pg_objective = aggregate(pg, mask)
        loss = -pg_objective + aggregate(penalty, mask)
        clip_mask = mask
    if grpo.clip_eps is None:
        clip_frac = torch.zeros((), dtype=logq.dtype)
    else:
        outside = ((ratio - 1.0).abs() > grpo.clip_eps).to(logq.dtype)
        clip_frac = (outside * clip_mask).sum() / clip_mask.sum().clamp(min=1)
    return LossTerms(loss, pg_objective.detach(), sequence_sum(kl["ref"], mask).mean().detach(),
                     sequence_sum(kl["old"], mask).mean().detach(), clip_frac.detach())
