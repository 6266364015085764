"""E5's exact rungs on the transformer (grpo.lm_rungs): the listed output space and one L-BFGS iteration.

Tiny untrained models (modulus 5, one layer, 32 dims): an untrained LM spreads its mass over the whole
vocabulary, so "other" (everything not answer-shaped) carries real mass and the bookkeeping is tested
where it matters.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from grpo_amp.config import ModelConfig, TaskConfig, compose_config
from grpo_amp.grpo import lm_rungs
from grpo_amp.grpo.rungs import exact_objective, population_advantage
from grpo_amp.policies.transformer import TransformerPolicy
from grpo_amp.grpo.pos import pos_exact
from grpo_amp.grpo.rollout import Rollout
from grpo_amp.tasks.modarith import ModArithTask

TASK = TaskConfig(name="modarith", modulus=5, n_train=8, n_heldout=4, seed=0)
MODEL = ModelConfig(n_layer=1, n_embd=32, n_head=2, intermediate_size=64)


@pytest.fixture(scope="module")
def task() -> ModArithTask:
    return ModArithTask(TASK)


@pytest.fixture(scope="module")
def signed_task() -> ModArithTask:
    return ModArithTask(dataclasses.replace(TASK, plus_sign=True))


@pytest.mark.parametrize("plus_sign", [False, True])
def test_answer_space_lists_every_answer_shaped_output_once(task, signed_task, plus_sign):
    task = signed_task if plus_sign else task
    space = lm_rungs.AnswerSpace(task)
    assert space.K == (1 + plus_sign) * (1 + 10 + 100)  # ["+"] then: <eos>; d <eos>; d d <eos>
    assert len(set(space.labels)) == space.K + 1 and space.labels[-1] == "other"
    questions = torch.arange(len(task.questions))
    correct = space.correct(questions)
    # the correct outputs are exactly the task's spellings of each value ("3", "03"; "+3", "+03" with the sign)
    for q in range(len(task.questions)):
        listed = {space.labels[j].removesuffix("<eos>") for j in torch.nonzero(correct[q])[:, 0].tolist()}
        assert listed == set(task.questions["answers"].iloc[q].split("|")) and len(listed) == 2 * (1 + plus_sign)
    # and the task's verifier accepts exactly those of the listed outputs (an independent path: the reward)
    tokens = space.tokens[None].expand(len(questions), -1, -1)
    reward = task.reward(Rollout(questions, tokens, space.mask[None].expand_as(tokens)))
    assert torch.equal(reward.bool(), correct[:, :-1])


@pytest.mark.parametrize("plus_sign", [False, True])
def test_listed_log_probs_are_teacher_forced_sequence_probabilities(task, signed_task, plus_sign):
    task = signed_task if plus_sign else task
    """Each listed log pi(o|q) against the policy's own teacher forcing of o alone (another path), the
    masses with "other" summing to 1, and the correct mass against pos.pos_exact (the pipeline's PoS)."""
    policy = TransformerPolicy.from_config(task, MODEL, seed=0, device="cpu")
    space = lm_rungs.AnswerSpace(task)
    questions = torch.arange(len(task.questions))
    with torch.no_grad():
        logp = space.log_probs(policy, questions)                                   # (Q, K + 1)
        direct = policy.completion_log_softmax(questions, space.tokens[None].expand(len(questions), -1, -1))
    token = direct.gather(-1, space.tokens[None, ..., None].expand(len(questions), -1, -1, 1)).squeeze(-1)
    seq = torch.where(space.mask, token, 0.0).sum(-1).double()                        # (Q, K)
    torch.testing.assert_close(logp[:, :-1], seq, rtol=0, atol=2e-5)
    assert float((torch.logsumexp(logp, -1) - 0).abs().max()) < 1e-12
    other = logp[:, -1].exp()
    assert float(other.min()) > 0.05  # untrained: real mass off the answer shapes, accounted for
    pos = (logp.exp() * space.correct(questions)).sum(-1)
    torch.testing.assert_close(pos, torch.from_numpy(pos_exact(policy, questions)[0]), rtol=0, atol=1e-5)


def test_the_prefix_tree_and_the_full_strings_give_the_same_log_probs_and_gradients(task):
    """log_probs walks the tree of digit prefixes (each prefix once: backend.branch); the backends without branch
    teacher-force the 10^D full-length strings. Both, and their gradients, agree to float32 rounding."""
    policy = TransformerPolicy.from_config(task, MODEL, seed=0, device="cpu")
    space = lm_rungs.AnswerSpace(task)
    questions = torch.arange(len(task.questions))
    weights = torch.randn(len(questions), space.K, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    params = [p for p in policy.parameters() if p.requires_grad]

    def value_and_grad(token_logp_of):
        backend = policy.backend()
        first, state = backend.prompt(policy.prompt_ids[questions])
        logp = torch.where(space.mask, token_logp_of(backend, first, state), 0.0).sum(-1)   # (Q, K)
        grads = torch.autograd.grad((logp.exp() * weights).sum(), params)
        return logp.detach(), torch.cat([g.flatten() for g in grads])

    def tree(backend, first, state):
        logq = space._tree_log_softmax(backend, first, state)
        index = space._tree_index(first.shape[-1])
        return torch.stack([logq[i].flatten(1)[:, index[i]] for i in range(space.T)], -1)

    tree_logp, tree_grad = value_and_grad(tree)
    flat_logp, flat_grad = value_and_grad(space._flat_token_logp)
    torch.testing.assert_close(tree_logp, flat_logp, rtol=0, atol=2e-5)
    assert float((tree_grad - flat_grad).norm() / flat_grad.norm()) < 1e-5


@pytest.mark.parametrize("rung", ["transformer_population_argmax", "transformer_finite_group_argmax"])
def test_one_exact_iteration_raises_the_objective_and_stays_below_the_free_table(task, rung):
    """One R1 (R2) iteration from pi_ref = pi_old: the exact objective rises from its value at the start
    (0: pi = pi_ref has pg = E_ref[A] = 0 for the population A and KL = 0), never above what a free table on the same
    outcomes reaches (objective_deficit >= 0), and the metrics say how far L-BFGS got."""
    cfg = compose_config(["policy=transformer_r1", "task=modarith", "grpo.argmax_max_iter=20", "grpo.argmax_tol=1e-9"])
    ref = TransformerPolicy.from_config(task, MODEL, seed=1, device="cpu")
    policy = ref.frozen_copy().requires_grad_(True)
    questions = task.split_ids("train")
    space = lm_rungs.AnswerSpace(task)
    with torch.no_grad():
        log_ref = space.log_probs(ref, questions)
    correct = space.correct(questions)
    p = (log_ref.exp() * correct).sum(-1)
    a_plus, a_minus = population_advantage(p, 1 - p, cfg.variant)
    start = exact_objective(log_ref, torch.where(correct, a_plus[:, None], a_minus[:, None]), log_ref, log_ref,
                            cfg.variant)["objective"]
    assert float(start.abs().max()) < 1e-9  # E_ref[A] = 0, KL = 0

    metrics = getattr(lm_rungs, rung)(policy, ref.frozen_copy(), ref, task, questions, cfg, None)
    assert 10 < metrics.argmax_iters <= 20 and metrics.argmax_tol_reached >= 0  # the budget (nearly) all used
    assert -metrics.loss > 1e-3  # the objective rose (R2 less: E1's weights are small where p_old is)
    assert metrics.objective_deficit >= -1e-9                                  # a free table does at least as well
    assert math.isfinite(metrics.argmax_grad_norm) and 0 < metrics.other_mass < 1
    assert metrics.mean_reward == pytest.approx(float(p.mean()), abs=1e-12)
    with torch.no_grad():
        moved = (space.log_probs(policy, questions).exp() * correct).sum(-1)
    assert float((moved - p).mean()) > 0  # GRPO's direction: the correct mass went up on average
    for name, param in policy.named_parameters():
        assert param.grad is None, name  # nothing left behind for the next iteration's optimiser


def test_twin_reference_is_the_transformers_pi_ref_as_a_table(task, tmp_path):
    """stages.reference's twin: read the transformer's reference directory, write a table with the same
    questions and splits, one row per question over the listed outputs + "other", whose p_ref is the
    transformer's (pos_exact by teacher forcing, another path) and whose correct sets are the task's."""
    from grpo_amp.policies.tabular import TabularPolicy
    from grpo_amp.stages.reference import _twin
    from grpo_amp.tasks.tabular import TabularTask

    lm_ref = TransformerPolicy.from_config(task, MODEL, seed=2, device="cpu")
    task.save(tmp_path / "transformer")
    lm_ref.save(tmp_path / "transformer")
    cfg = compose_config(["policy=twin_r1", f"inputs.reference={tmp_path / 'transformer'}"])
    twin_task, twin_ref = _twin(cfg)
    twin_task.save(tmp_path / "twin")
    twin_ref.save(tmp_path / "twin")
    loaded = TabularTask.load(tmp_path / "twin")
    ref = TabularPolicy.load(tmp_path / "twin", loaded)
    questions = torch.arange(len(task.questions))
    assert loaded.correct.shape == (len(task.questions), 112)
    assert list(loaded.questions["split"]) == list(task.questions["split"])
    space = lm_rungs.AnswerSpace(task)
    for q in range(len(task.questions)):
        spelled = {space.labels[j].removesuffix("<eos>") for j in torch.nonzero(loaded.correct[q])[:, 0].tolist()}
        assert spelled == set(task.questions["answers"].iloc[q].split("|"))
    torch.testing.assert_close(torch.from_numpy(pos_exact(ref, questions)[0]),
                               torch.from_numpy(pos_exact(lm_ref, questions)[0]), rtol=0, atol=1e-5)


def test_shuffled_rewards_permute_within_each_question_only(task):
    """E3's no-signal control: each row of rewards is a permutation of the verifier's (same count of
    successes per question), and the permutation is not the identity."""
    from grpo_amp.grpo.e3_controls import _ShuffledRewards

    policy = TransformerPolicy.from_config(task, MODEL, seed=0, device="cpu")
    g = torch.Generator().manual_seed(0)
    rollout = policy.sample(torch.arange(len(task.questions)), 64, g)
    # make the rewards informative: half of each row correct, by writing the right answer into the first half
    rollout.tokens[:, :32] = task.answer_ids[rollout.questions][:, None, 0, : rollout.tokens.shape[-1]]
    rollout.mask[:, :32] = task.answer_mask[rollout.questions][:, None, 0, : rollout.tokens.shape[-1]]
    true = task.reward(rollout)
    shuffled = _ShuffledRewards(task, torch.Generator().manual_seed(1)).reward(rollout)
    torch.testing.assert_close(shuffled.sort(1).values, true.sort(1).values)
    assert not torch.equal(shuffled, true) and bool((true[:, :32] == 1).all())


def test_tempered_reference_matches_the_entropy_drop(task):
    """T = 1 when the trained policy is pi_ref itself; for a sharper policy (its final norm gain doubled: logits x 2) T < 1 and
    the tempered pi_ref's mean train entropy equals the sharper policy's (recomputed here)."""
    from grpo_amp.grpo.e3_controls import _entropy, tempered_reference

    ref = TransformerPolicy.from_config(task, MODEL, seed=3, device="cpu")
    same = tempered_reference(ref, ref, task)
    assert same["temperature"] == pytest.approx(1.0, abs=1e-9) and same["heldout_p_tempered"] == pytest.approx(same["heldout_p_ref"])
    sharp = ref.frozen_copy()
    with torch.no_grad():
        sharp.model.model.norm.weight.mul_(2.0)  # every logit doubled (the head is tied to the embedding)
    row = tempered_reference(ref, sharp, task)
    assert row["temperature"] < 1 and row["entropy_n"] < row["entropy_ref"]
    space = lm_rungs.AnswerSpace(task)
    train = task.split_ids("train")
    with torch.no_grad():
        log_t = torch.log_softmax(space.log_probs(ref, train) / row["temperature"], -1)
    assert float(_entropy(log_t).mean()) == pytest.approx(row["entropy_n"], abs=1e-6)
