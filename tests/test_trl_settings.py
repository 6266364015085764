"""Our settings <-> TRL's, and TRL's advantage (eps outside the root) in E1's finite-group weights."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from grpo_amp import theory
from grpo_amp import estimators
from grpo_amp.config import (Config, EstimatorConfig, EstimatorName, GRPOConfig, KLEstimator, KLTarget, LossAgg, Norm,
                             PolicyConfig, PolicyName, RatioLevel, TaskConfig, VariantConfig)
from grpo_amp.io import InputError
from grpo_amp.trl_family.settings import (NO_CLIP, TRL_ADV_EPS, TRL_ESTIMATORS, format_mapping, from_trl, to_trl,
                                          trl_estimator)


def cfg(kl="ref", norm="mean_std", beta=0.1, clip=0.2, mu=10, G=16, estimator="k3", ratio="token",
        agg="token_mean", temperature=1.0, advantage="grpo", policy="transformer") -> Config:
    return Config(variant=VariantConfig(name="v", norm=Norm(norm), kl=KLTarget(kl), beta=beta),
                  estimator=EstimatorConfig(name=EstimatorName(advantage)),
                  grpo=GRPOConfig(group_size=G, inner_steps=mu, lr=5e-6, clip_eps=clip, kl_estimator=KLEstimator(estimator),
                                  ratio_level=RatioLevel(ratio), loss_agg=LossAgg(agg)),
                  policy=PolicyConfig(name=PolicyName(policy), temperature=temperature),
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
    assert m.explicit_ref_penalty and m.theory_weights == dict(norm="mean_std", eps=1e-4, std="sample", eps_inside=False,
                                                               dynamic_sampling=False, pass_k=None)
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
                                     {"mask_truncated_completions": True}, {"loss_type": "dr_grpo"},
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
    # the estimators row trl_default: sample std, eps outside the root (theory's std="trl" spelled out)
    assert finite_group == {"norm": "mean_std", "std": "sample", "eps": TRL_ADV_EPS, "eps_inside": False,
                            "dynamic_sampling": False, "pass_k": None}
    c.policy = PolicyConfig(name=PolicyName.transformer)
    assert finite_group_advantage(c) == {}

    p_ref = np.array([0.2, 0.5, 0.8])
    pos = pd.DataFrame({"question": np.tile(np.arange(3), 3), "split": "train", "seed": 0,
                        "iteration": np.repeat(np.arange(3), 3), "pos": np.tile(p_ref, 3), "pos_lo": np.nan,
                        "pos_hi": np.nan, "method": "exact", "kl_in_correct": 0.0, "n_correct": 1})
    pred = predict_frame(pos, c.variant, 4, finite_group).pivot(index="iteration", columns="question",
                                                                 values="pred_trajectory_G").to_numpy()
    want = theory.pos_recurrence(p_ref, 2, kl="ref", beta=2.0, group_size=4, norm="mean_std", std="trl", eps=1e-4)
    population = theory.pos_recurrence(p_ref, 2, kl="ref", beta=2.0, group_size=4, norm="mean_std")
    np.testing.assert_allclose(pred, want, rtol=0, atol=1e-12)
    assert np.abs(want - population)[1:].max() > 1e-3


# ---- TRL per estimator (issue 21 item 4) ---------------------------------------------------------
# (estimator, variant.norm) -> (scale_rewards, loss_type with loss_agg=sequence_mean, the estimators row TRL computes)
EXPRESSIBLE = {("grpo", "mean_std"): ("group", "grpo", "trl_default"),
               ("grpo", "mean_only"): ("none", "grpo", "dr_grpo"),
               ("trl_default", "mean_std"): ("group", "grpo", "trl_default"),
               ("dr_grpo", "mean_std"): ("none", "dr_grpo", "dr_grpo"),
               ("batch", "mean_std"): ("batch", "grpo", "batch")}


@pytest.mark.parametrize("name, norm", list(EXPRESSIBLE))
def test_each_expressible_estimator_maps_to_trls_settings_and_its_own_weights(name, norm, tmp_path):
    scale_rewards, loss_type, computed = EXPRESSIBLE[(name, norm)]
    m = to_trl(cfg(norm=norm, agg="sequence_mean", advantage=name))
    assert (m.kwargs["scale_rewards"], m.kwargs["loss_type"]) == (scale_rewards, loss_type)
    row = estimators.resolve(computed)
    assert m.theory_weights == dict(norm=row.norm, eps=row.eps, std=row.std, eps_inside=row.eps_inside,
                                    dynamic_sampling=False, pass_k=None)
    text = format_mapping(m)
    assert f"scale_rewards={scale_rewards!r}" in text and f"loss_type={loss_type!r}" in text
    trl = pytest.importorskip("trl")
    args = trl.GRPOConfig(**m.kwargs, output_dir=str(tmp_path), use_cpu=True, report_to="none",
                          per_device_train_batch_size=16)
    assert (args.scale_rewards, args.loss_type) == (scale_rewards, loss_type)


def test_dr_grpo_log_line_says_what_trls_constant_normaliser_means():
    text = format_mapping(to_trl(cfg(advantage="dr_grpo")))
    assert "max_completion_length" in text and "constant" in text and "Adam" in text
    assert "grpo.loss_agg=token_mean not used" in text  # the estimator's loss_type wins, and the log says so


@pytest.mark.parametrize("name", [n for n, row in TRL_ESTIMATORS.items() if row.refused])
def test_estimators_trl_cannot_compute_are_one_line_errors_naming_the_field(name):
    assert name in ("verl", "rloo", "dapo", "dapo_uncapped", "pass_k")
    with pytest.raises(InputError, match=f"estimator.name={name} has no TRL 1.16 counterpart") as exc:
        to_trl(cfg(advantage=name, G=8))
    assert "\n" not in str(exc.value)
    with pytest.raises(InputError, match="estimator.name='nope'"):
        trl_estimator("nope")


def _trl_advantage(rewards: torch.Tensor, scale_rewards: str, sigma_b=None) -> torch.Tensor:
    """TRL 1.16's advantage, re-stated from GRPOTrainer._generate_and_score_completions (sum_then_normalize):
    rewards - group nanmean, then / (std_rewards + 1e-4) unless scale_rewards == "none"; std_rewards is TRL's
    own nanstd of the group ("group") or of the whole generation batch ("batch": ``sigma_b``, a tensor of the
    batch's rewards or a number)."""
    from trl.trainer.utils import nanstd

    G = rewards.shape[1]
    mean = torch.nanmean(rewards, dim=1).repeat_interleave(G)
    if scale_rewards == "group":
        std = nanstd(rewards, dim=1).repeat_interleave(G)
    elif scale_rewards == "batch":
        std = nanstd(sigma_b).expand(rewards.numel()) if torch.is_tensor(sigma_b) else torch.full((rewards.numel(),), sigma_b)
    adv = rewards.flatten() - mean
    if scale_rewards != "none":
        adv = adv / (std + 1e-4)
    return adv.view_as(rewards)


def _enumerated(p: float, G: int, advantage) -> tuple[float, float]:
    """(w+, w-) = (E[A_0 | r_0 = 1], -E[A_0 | r_0 = 0]) over all 2^G reward patterns of one group."""
    rewards = torch.tensor(list(itertools.product([0.0, 1.0], repeat=G)), dtype=torch.float64)  # (2^G, G)
    a0 = advantage(rewards)[:, 0]
    k = rewards[:, 1:].sum(1)
    prob = p ** k * (1 - p) ** (G - 1 - k)  # the other G - 1 outcomes
    return float((prob * a0)[rewards[:, 0] == 1].sum()), -float((prob * a0)[rewards[:, 0] == 0].sum())


def _predicted_weights(c: Config, p, p_batch=None) -> tuple[np.ndarray, np.ndarray]:
    """The weights the predict stage uses for a trl run (analysis.predict.estimator_kwargs with the loop's own
    advantage, as stages.predict hands it over)."""
    from grpo_amp.analysis.predict import estimator_kwargs
    from grpo_amp.stages.predict import finite_group_advantage

    kw = estimator_kwargs(c.variant, c.advantage, c.grpo.group_size, finite_group_advantage(c), p_batch=p_batch)
    keys = ("norm", "eps", "std", "eps_inside", "dynamic_sampling", "batch_std", "pass_k")
    return theory.finite_group_weights(p, c.grpo.group_size, **{k: kw[k] for k in keys})


@pytest.mark.parametrize("name, scale_rewards", [("grpo", "group"), ("dr_grpo", "none"), ("batch", "batch")])
def test_trl_runs_predicted_weights_equal_the_enumeration_of_trls_formula(name, scale_rewards):
    """The prediction of a trl run with each estimator = TRL's own advantage formula (TRL's nanstd) averaged over
    all 2^G reward patterns of a group. ``batch`` holds sigma_b fixed at the value the prediction uses (the
    batch's sqrt(pbar (1 - pbar)) at p_batch); the next test checks that plug-in against a whole batch.

    The predicted weights also equal theory.finite_group_weights with the estimators row's own keywords (that
    part is plumbing: the same table read twice). The enumeration is not: it fails if TRL's division (eps
    outside, Bessel) or the row chosen for a scale_rewards were wrong; the last assert shows it could.
    """
    pytest.importorskip("trl")
    G, p_batch = 5, np.array([0.1, 0.35, 0.6])
    c = cfg(G=G, advantage=name, policy="trl")
    sigma_b = float(np.sqrt(p_batch.mean() * (1 - p_batch.mean())))
    for p in (0.05, 0.35, 0.8):
        got = _predicted_weights(c, p, p_batch)
        want = _enumerated(p, G, lambda r: _trl_advantage(r, scale_rewards, sigma_b))
        np.testing.assert_allclose(got, want, rtol=1e-7, err_msg=f"{name} p={p}")  # TRL's nanstd: float32 Bessel
        row = estimators.resolve(name if name != "grpo" else "trl_default")
        plumbing = theory.finite_group_weights(p, G, **row.theory_kwargs(sigma_b if row.batch else None))
        np.testing.assert_allclose(got, plumbing, rtol=1e-12)
        other = {"group": "none", "none": "group", "batch": "group"}[scale_rewards]
        wrong = _enumerated(p, G, lambda r: _trl_advantage(r, other, sigma_b))
        assert abs(wrong[0] - got[0]) > 1e-2 * got[0]


def test_batch_plug_in_sigma_b_against_trls_std_over_a_whole_batch():
    """TRL's "batch" divides by the nanstd of all Q x G rewards, which moves with the group's own rewards; the
    prediction plugs in sigma_b = sqrt(pbar (1 - pbar)). Enumerate one group's 2^G patterns inside a batch whose
    other Q - 1 groups hold the expected share of successes, with TRL's nanstd over the whole batch each time:
    the weights are within 2/Q (relative) of the plug-in's, and the plug-in at the wrong sigma_b (the group's
    own sqrt(p (1 - p))) misses by far more.
    """
    pytest.importorskip("trl")
    G, Q, p = 4, 64, 0.25  # each other group: exactly one success in four, pbar = 0.25
    others = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64).repeat(Q - 1, 1)

    def batch_advantage(rewards):  # rewards (2^G, G): for each pattern, TRL's std over [pattern; others]
        out = []
        for r in rewards:
            batch = torch.cat([r[None], others])
            out.append(_trl_advantage(r[None], "batch", batch.flatten())[0])
        return torch.stack(out)

    want = _enumerated(p, G, batch_advantage)
    c = cfg(G=G, advantage="batch", policy="trl")
    got = _predicted_weights(c, p, p_batch=np.array([p]))
    np.testing.assert_allclose(got, want, rtol=2 / Q)
    wrong = _predicted_weights(c, p, p_batch=np.array([0.5]))  # sigma_b = 0.5 instead of 0.433
    assert abs(wrong[0] - want[0]) > 5 * abs(got[0] - want[0])


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "batch"])
def test_from_trl_reads_the_estimator_table_backwards(name):
    """to_trl then from_trl gives the estimator back (grpo: no estimator override, the variant's norm)."""
    c = cfg(advantage=name, agg="sequence_mean")
    back = from_trl(to_trl(c).kwargs)
    assert back.get("estimator.name", "grpo") == name
    assert to_trl(cfg(advantage=back.get("estimator.name", "grpo"))).kwargs["scale_rewards"] == \
        to_trl(c).kwargs["scale_rewards"]
    assert "estimator.name" not in from_trl({"scale_rewards": "none"})  # TRL's Dr. GRPO advantage, its dapo loss
