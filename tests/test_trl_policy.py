"""TRL's GRPOTrainer behind grpo.trainer.train's contract, at tiny size (modulus 5, one layer, 32 dims)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("trl")

from grpo_amp.config import (Config, GRPOConfig, KLEstimator, ModelConfig, PolicyConfig, PolicyName, RatioLevel,  # noqa: E402
                             ReferenceTrainingConfig, TaskConfig, VariantConfig)
from grpo_amp.policies.reference_training import train_reference  # noqa: E402
from grpo_amp.policies.transformer import TransformerPolicy  # noqa: E402
from grpo_amp.grpo.pos import pos_exact  # noqa: E402
from grpo_amp.schema import ARGMAX_METRICS, C1_COLUMNS, TRAIN_METRICS_COLUMNS  # noqa: E402
from grpo_amp.tasks.modarith import ModArithTask  # noqa: E402
from grpo_amp.trl_family.policy import train_trl  # noqa: E402

TASK = TaskConfig(name="modarith", modulus=5, n_train=12, n_heldout=4, seed=0)
MODEL = ModelConfig(n_layer=1, n_embd=32, n_head=2, intermediate_size=64)
REF = ReferenceTrainingConfig(steps=80, batch_size=64, lr=3e-3)
N, MU = 3, 2


def config(seed: int = 0) -> Config:
    return Config(variant=VariantConfig(beta=0.1),
                  grpo=GRPOConfig(iterations=N, group_size=4, inner_steps=MU, lr=1e-2, ratio_level=RatioLevel.token,
                                  kl_estimator=KLEstimator.k3, c1_groups=2),
                  policy=PolicyConfig(name=PolicyName.transformer, device="cpu"),
                  task=TASK, seed=seed)


@pytest.fixture(scope="module")
def task() -> ModArithTask:
    return ModArithTask(TASK)


@pytest.fixture(scope="module")
def ref(task) -> TransformerPolicy:
    ref = train_reference(task, MODEL, REF, seed=0, device="cpu")
    ref.requires_grad_(False)
    return ref


def run(task, ref, out, cfg):
    """One train_trl run that saves every round's checkpoint and measures PoS in the callback."""
    policy = TransformerPolicy(task, ref.frozen_copy().model, device="cpu")
    policy.requires_grad_(True)
    questions = torch.arange(len(task.questions))
    measured = {}

    def save_iteration(n, pi):
        measured[n] = pos_exact(pi, questions)[0]
        pi.save(out / f"iter_{n:03d}")

    history = train_trl(policy, ref, task, cfg, save_iteration=save_iteration)
    return history, measured, policy


def test_callback_pos_equals_the_saved_rounds_pos_and_runs_reproduce(task, ref, tmp_path):
    """The PoS the callback measured after round n = the PoS measured afterwards from round n's checkpoint.

    The second measurement is independent of the run (TransformerPolicy.load of the saved directory in a
    fresh object, then pos_exact); it fails if the callback measured another model than the one TRL
    trains or at another time than the round's end. Training must move PoS between rounds (else the
    equality would hold trivially), and a second run with the same seed gives the same numbers.
    """
    history, measured, final = run(task, ref, tmp_path / "a", config())
    questions = torch.arange(len(task.questions))
    assert sorted(measured) == list(range(1, N + 1))
    p_ref = pos_exact(ref, questions)[0]
    previous = p_ref
    for n in range(1, N + 1):
        loaded = TransformerPolicy.load(tmp_path / "a" / f"iter_{n:03d}", task, device="cpu")
        np.testing.assert_allclose(pos_exact(loaded, questions)[0], measured[n], rtol=0, atol=1e-6)
        assert np.abs(measured[n] - previous).max() > 1e-4  # round n moved pi
        previous = measured[n]
    np.testing.assert_allclose(pos_exact(final, questions)[0], measured[N], atol=1e-6)  # policy trained in place

    metrics = history.metrics_frame()
    # the loop's history has no seed column: the train stage adds it (one training per seed); the exact
    # rungs' argmax_* columns are there (one IterationMetrics for every loop) and NaN: TRL has no argmax
    assert list(metrics.columns) == [c for c in TRAIN_METRICS_COLUMNS if c != "seed"]
    assert metrics[list(ARGMAX_METRICS)].isna().all().all()
    assert metrics["iteration"].tolist() == [1, 2, 3]
    assert metrics["mean_reward"].between(0, 1).all() and np.isfinite(metrics["loss"]).all()
    assert (metrics["kl_ref"].iloc[1:] > 0).all()  # beta > 0: TRL's k3 to pi_ref, non-zero once pi moved
    c1 = history.c1_frame()
    assert set(C1_COLUMNS) - {"seed"} <= set(c1.columns) and len(c1) == N * TASK.n_train

    again, measured_again, _ = run(task, ref, tmp_path / "b", config())
    for n in range(1, N + 1):
        np.testing.assert_array_equal(measured_again[n], measured[n])
    cols = [c for c in TRAIN_METRICS_COLUMNS if c not in ("seed", *ARGMAX_METRICS)]
    assert again.metrics_frame()[cols].equals(metrics[cols])
    assert again.c1_frame().equals(c1)


@pytest.mark.parametrize("name", ["dr_grpo", "batch"])
def test_trls_own_advantages_are_the_estimator_rows(task, ref, monkeypatch, name):
    """Run TRL for one round with estimator ``name`` and catch the advantages TRL itself computed (the
    output of GRPOTrainer._generate_and_score_completions) and the rewards it was given: they equal our
    trainer's advantage of the estimators row the prediction uses (grpo.loss.group_advantages with
    trl_family.settings' row), and differ from TRL's default (scale_rewards="group"), so the settings reached
    TRL. The trainer also really ran with the row's scale_rewards and loss_type.
    """
    import trl

    from grpo_amp import estimators
    from grpo_amp.config import EstimatorConfig, EstimatorName
    from grpo_amp.grpo.loss import group_advantages
    from grpo_amp.trl_family import policy as trl_policy
    from grpo_amp.trl_family.settings import TRL_ESTIMATORS, to_trl

    seen = {"rewards": [], "advantages": [], "args": []}
    make_reward = trl_policy._reward_function

    def recording_reward(task_, T):
        reward, calls = make_reward(task_, T)

        def wrapped(*args, **kwargs):
            out = reward(*args, **kwargs)
            seen["rewards"].append(torch.tensor(out, dtype=torch.float64))
            return out

        wrapped.__name__ = reward.__name__
        return wrapped, calls

    generate = trl.GRPOTrainer._generate_and_score_completions

    def recording_generate(self, inputs):
        out = generate(self, inputs)
        seen["advantages"].append(out["advantages"].detach().double().cpu())
        seen["args"].append((self.args.scale_rewards, self.args.loss_type))
        return out

    monkeypatch.setattr(trl_policy, "_reward_function", recording_reward)
    monkeypatch.setattr(trl.GRPOTrainer, "_generate_and_score_completions", recording_generate)
    cfg = config()
    cfg.grpo.iterations, cfg.grpo.inner_steps = 1, 1
    cfg.estimator = EstimatorConfig(name=EstimatorName(name))
    policy = TransformerPolicy(task, ref.frozen_copy().model, device="cpu")
    policy.requires_grad_(True)
    train_trl(policy, ref, task, cfg)

    row, told = TRL_ESTIMATORS[name], to_trl(cfg).kwargs
    assert seen["args"] == [(row.scale_rewards, told["loss_type"])] and row.loss_type in (None, told["loss_type"])
    G = cfg.grpo.group_size
    rewards = seen["rewards"][0].view(-1, G)                                      # (Q, G)
    assert 0 < rewards.mean() < 1 and not (rewards == rewards[:, :1]).all()     # some spread: A is not all 0
    ours, _ = group_advantages(rewards, **estimators.resolve(row.weights).loss_kwargs())
    np.testing.assert_allclose(seen["advantages"][0].view(-1, G).numpy(), ours.numpy(), rtol=1e-5, atol=1e-6)
    default, _ = group_advantages(rewards, **estimators.resolve("trl_default").loss_kwargs())
    assert (default - ours).abs().max() > 1e-2
