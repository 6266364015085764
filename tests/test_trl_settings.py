"""Our settings <-> TRL's, and TRL's advantage (eps outside the root) in E1's finite-group weights."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from grpo_amp import theory
from grpo_amp.config import (Config, GRPOConfig, KLEstimator, KLTarget, LossAgg, Norm, PolicyConfig, PolicyName,
                             RatioLevel, TaskConfig, VariantConfig)
from grpo_amp.io import InputError
from grpo_amp.trl_family.settings import NO_CLIP, TRL_ADV_EPS, format_mapping, from_trl, to_trl


def cfg(kl="ref", norm="mean_std", beta=0.1, clip=0.2, mu=10, G=16, estimator="k3", ratio="token",
        agg="token_mean", temperature=1.0) -> Config:
    return Config(variant=VariantConfig(name="v", norm=Norm(norm), kl=KLTarget(kl), beta=beta),
                  grpo=GRPOConfig(group_size=G, inner_steps=mu, lr=5e-6, clip_eps=clip, kl_estimator=KLEstimator(estimator),
                                  ratio_level=RatioLevel(ratio), loss_agg=LossAgg(agg)),
                  policy=PolicyConfig(name=PolicyName.transformer, temperature=temperature),
                  task=TaskConfig(name="modarith"))


# ---- TRL's advantage -------------------------------------------------------------------------
def trl_advantage(rewards: torch.Tensor, eps: float) -> torch.Tensor:
    """TRL 1.16's group advantage, re-stated: (r - group mean) / (nanstd(group) + eps), nanstd being TRL's own.

    TRL computes it inline in GRPOTrainer._generate_and_score_completions (sum_then_normalize,
    scale_rewards="group"), with eps = 1e-4 hard-coded; only nanstd is a function we can call, so
    the rest is a faithful re-statement of those lines, with eps as a parameter.
    """
    from trl.trainer.utils import nanstd

    G = rewards.shape[1]
    mean = torch.nanmean(rewards, dim=1).repeat_interleave(G)
    std = nanstd(rewards, dim=1).repeat_interleave(G)
    return ((rewards.flatten() - mean) / (std + eps)).view_as(rewards)


@pytest.mark.parametrize("eps", [TRL_ADV_EPS, 0.3])
def test_finite_group_weights_trl_matches_monte_carlo_of_trls_advantage(eps):
    """w+_G = E[A_0 | r_0 = 1], w-_G = -E[A_0 | r_0 = 0] under TRL's advantage, by Monte Carlo (G = 16).

    eps = 0.3 makes eps-outside and eps-inside differ by far more than the Monte Carlo error, so the
    test tells the two apart; eps = 1e-4 is TRL's value.
    """
    pytest.importorskip("trl")
    G, n = 16, 200_000
    rng = torch.Generator().manual_seed(0)
    z_inside = []
    for p in (0.1, 0.4, 0.8):
        rewards = (torch.rand(n, G, generator=rng, dtype=torch.float64) < p).double()
        for r0, sign in ((1.0, 1.0), (0.0, -1.0)):
            rewards[:, 0] = r0
            a0 = sign * trl_advantage(rewards, eps)[:, 0].numpy()
            w_plus, w_minus = theory.finite_group_weights(p, G, eps=eps, std="trl")
            want = w_plus if r0 else w_minus
            se = a0.std() / np.sqrt(n)
            assert abs(a0.mean() - want) < 4 * se + 1e-12, (p, r0, a0.mean(), want, se)
            inside = theory.finite_group_weights(p, G, eps=eps, std="sample")[0 if r0 else 1]
            z_inside.append(abs(a0.mean() - inside) / se)
    if eps > 0.01:  # eps inside the root is a different number, far outside the Monte Carlo error somewhere
        assert max(z_inside) > 20


def test_finite_group_weights_trl_exact_by_enumeration():
    """All 2^G reward vectors of a small group, weighted by their probability: the closed form to 1e-7.

    Not 1e-12: TRL's nanstd multiplies by Bessel's count/(count - 1) computed in float32 (an int64
    division), a relative error of ~2e-8 on the std even for float64 rewards.
    """
    pytest.importorskip("trl")
    G, eps, p = 6, 0.05, 0.35
    rewards = torch.tensor(list(itertools.product([0.0, 1.0], repeat=G)), dtype=torch.float64)  # (2^G, G)
    a0 = trl_advantage(rewards, eps)[:, 0]
    k = rewards[:, 1:].sum(1)
    prob = p ** k * (1 - p) ** (G - 1 - k)  # the other G - 1 outcomes
    w_plus = float((prob * a0)[rewards[:, 0] == 1].sum())
    w_minus = -float((prob * a0)[rewards[:, 0] == 0].sum())
    got = theory.finite_group_weights(p, G, eps=eps, std="trl")
    np.testing.assert_allclose(got, (w_plus, w_minus), rtol=1e-7)
    assert abs(got[0] - theory.finite_group_weights(p, G, eps=eps, std="sample")[0]) > 1e-3  # not eps inside


def test_trl_std_needs_a_group_size():
    with pytest.raises(ValueError, match="group_size"):
        theory.pos_recurrence(0.3, 2, std="trl", eps=1e-4)
    assert np.isfinite(theory.pos_recurrence(0.3, 2, std="trl", eps=1e-4, group_size=16)).all()


# ---- the mapping -----------------------------------------------------------------------------
def test_mapping_builds_trls_config_with_the_paper_appendix_values(tmp_path):
    """The kwargs are accepted by trl.GRPOConfig and read back as the paper appendix's setting."""
    trl = pytest.importorskip("trl")
    m = to_trl(cfg(temperature=0.1))
    args = trl.GRPOConfig(**m.kwargs, output_dir=str(tmp_path), use_cpu=True, report_to="none",
                          per_device_train_batch_size=16)
    assert (args.beta, args.epsilon, args.num_iterations, args.num_generations) == (0.1, 0.2, 10, 16)
    assert (args.scale_rewards, args.loss_type, args.temperature, args.learning_rate) == ("group", "dapo", 0.1, 5e-6)
    assert args.use_bias_correction_kl is False and args.entropy_coef == 0.0
    assert m.explicit_ref_penalty and m.theory_weights == {"norm": "mean_std", "std": "trl", "eps": 1e-4}
    text = format_mapping(m)
    assert "NOT 1" in text and "C3 under kl=ref applies" in text


@pytest.mark.parametrize("kw", [dict(), dict(norm="mean_only"), dict(clip=None, mu=1), dict(estimator="full_vocab"),
                                dict(agg="sequence_mean", temperature=0.5), dict(kl="mirror")])
def test_mapping_round_trips(kw):
    c = cfg(**kw)
    back = from_trl(to_trl(c).kwargs)
    assert back["variant.norm"] == c.variant.norm.value and back["variant.kl"] == c.variant.kl.value
    assert back["grpo.clip_eps"] == c.grpo.clip_eps and back["grpo.inner_steps"] == c.grpo.inner_steps
    assert back["grpo.loss_agg"] == c.grpo.loss_agg.value and back["grpo.group_size"] == c.grpo.group_size
    assert back["policy.temperature"] == c.policy.temperature and back["grpo.lr"] == c.grpo.lr
    if c.variant.kl.value == "ref":
        assert back["variant.beta"] == c.variant.beta and back["grpo.kl_estimator"] == c.grpo.kl_estimator.value


def test_mirror_means_trl_beta_zero_and_flags_it():
    m = to_trl(cfg(kl="mirror", beta=2.0))
    assert m.kwargs["beta"] == 0.0 and not m.explicit_ref_penalty
    assert "C3 under kl=ref does not apply" in format_mapping(m) and "fit E4 under kl=mirror" in format_mapping(m)
    assert to_trl(cfg(clip=None)).kwargs["epsilon"] == NO_CLIP


@pytest.mark.parametrize("kw, what", [(dict(kl="both"), "variant.kl=both"), (dict(ratio="sequence"), "ratio_level"),
                                      (dict(estimator="k1"), "kl_estimator=k1")])
def test_inexpressible_settings_are_one_line_errors(kw, what):
    c = cfg(**kw) if "kl" not in kw else Config(
        variant=VariantConfig(name="v", kl=KLTarget.both, beta=0.1, beta_prev=0.1),
        policy=PolicyConfig(name=PolicyName.transformer), task=TaskConfig(name="modarith"))
    with pytest.raises(InputError, match=what) as exc:
        to_trl(c)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("setting", [{"entropy_coef": 0.01}, {"top_entropy_quantile": 0.2},
                                     {"mask_truncated_completions": True}, {"scale_rewards": "batch"},
                                     {"loss_type": "cispo"}, {"epsilon_high": 0.28}, {"importance_sampling_level": "sequence"}])
def test_trl_settings_without_theory_counterpart_are_refused(setting):
    name = next(iter(setting))
    with pytest.raises(InputError, match=name) as exc:
        from_trl(setting)
    assert "\n" not in str(exc.value)
    assert from_trl({"epsilon": 0.2, "epsilon_high": 0.2})["grpo.clip_eps"] == 0.2  # symmetric, spelled out


# ---- the trl policy's prediction uses TRL's advantage ------------------------------------------
def test_trl_policys_finite_group_prediction_uses_trls_advantage():
    """predict's _G columns for policy=trl follow std="trl", eps=1e-4 (the variant says population, eps 0).

    At G = 4 the two advantages differ by the factor sqrt(G/(G-1)) on the std: the test fails if the
    stage predicts with the variant's advantage instead of the one TRL's loop computes.
    """
    import pandas as pd

    from grpo_amp.analysis.predict import predict_frame
    from grpo_amp.stages.predict import finite_group_advantage

    c = cfg(G=4, beta=2.0)  # a large beta keeps p_n off 1, where every advantage predicts the same
    c.policy = PolicyConfig(name=PolicyName.trl)
    finite_group = finite_group_advantage(c)
    assert finite_group == {"norm": "mean_std", "std": "trl", "eps": TRL_ADV_EPS}
    c.policy = PolicyConfig(name=PolicyName.transformer)
    assert finite_group_advantage(c) == {}

    p_ref = np.array([0.2, 0.5, 0.8])
    pos = pd.DataFrame({"question": np.tile(np.arange(3), 3), "split": "train", "seed": 0,
                        "iteration": np.repeat(np.arange(3), 3), "pos": np.tile(p_ref, 3), "pos_lo": np.nan,
                        "pos_hi": np.nan, "method": "exact", "kl_in_correct": 0.0})
    pred = predict_frame(pos, c.variant, 4, finite_group).pivot(index="iteration", columns="question",
                                                                 values="pred_trajectory_G").to_numpy()
    want = theory.pos_recurrence(p_ref, 2, kl="ref", beta=2.0, group_size=4, norm="mean_std", std="trl", eps=1e-4)
    population = theory.pos_recurrence(p_ref, 2, kl="ref", beta=2.0, group_size=4, norm="mean_std")
    np.testing.assert_allclose(pred, want, rtol=0, atol=1e-12)
    assert np.abs(want - population)[1:].max() > 1e-3
