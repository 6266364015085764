"""The C1 check's batched paths on the transformer: ``sample_groups`` against one ``sample`` call per group
(the same draws, the generator left in the same state), ``token_log_probs`` against ``log_softmax``
(float32 round-off), and the distinct-rows index both rest on."""

from __future__ import annotations

import pytest
import torch

from grpo_amp.config import ModelConfig, TaskConfig
from grpo_amp.grpo.loss import token_logp
from grpo_amp.policies.base import Policy
from grpo_amp.policies.transformer import TransformerPolicy, distinct
from grpo_amp.tasks.modarith import ModArithTask


@pytest.fixture(scope="module")
def policy() -> TransformerPolicy:
    task = ModArithTask(TaskConfig(name="modarith", modulus=7, n_train=20, n_heldout=5, answer_digits=2, seed=0))
    pi = TransformerPolicy.from_config(task, ModelConfig(n_layer=1, n_embd=32, n_head=2, intermediate_size=64),
                                       seed=0, device="cpu")
    return pi.requires_grad_(False)


def one_by_one(policy, questions, n_groups, G, seed):
    g = torch.Generator().manual_seed(seed)
    rollout = Policy.sample_groups(policy, questions, n_groups, G, g)  # the base class: one sample() per group
    return rollout, g.get_state()


@pytest.mark.parametrize("n_groups, G", [(6, 4), (3, 8)])
def test_sample_groups_draws_what_one_call_per_group_draws(policy, n_groups, G):
    questions = policy.task.split_ids("train")
    expected, state = one_by_one(policy, questions, n_groups, G, seed=3)
    g = torch.Generator().manual_seed(3)
    got = policy.sample_groups(questions, n_groups, G, g)
    assert got.tokens.shape == (len(questions), n_groups * G, policy.task.max_new_tokens)
    assert torch.equal(got.tokens, expected.tokens) and torch.equal(got.mask, expected.mask)
    assert torch.equal(g.get_state(), state)  # the training draws that follow are the same


def test_sample_groups_falls_back_when_a_call_would_stop_early(policy, monkeypatch):
    """Every row draws <eos> first: each call stops after one token, so the calls' draws are not the batch's."""
    lean = policy._lean
    prompt = lean.prompt

    def eos_first(prompt_ids):
        logits, state = prompt(prompt_ids)
        return logits.index_fill(-1, torch.tensor([policy.task.eos_id]), 1e4), state

    monkeypatch.setattr(lean, "prompt", eos_first)
    questions = policy.task.split_ids("train")
    expected, state = one_by_one(policy, questions, 4, 4, seed=5)
    g = torch.Generator().manual_seed(5)
    got = policy.sample_groups(questions, 4, 4, g)
    assert torch.equal(got.tokens, expected.tokens) and torch.equal(g.get_state(), state)
    assert bool((got.tokens[..., 0] == policy.task.eos_id).all()) and not bool(got.mask[..., 1:].any())


def test_token_log_probs_agree_with_log_softmax(policy):
    questions = policy.task.split_ids("train")
    rollout = policy.sample_groups(questions, 8, 4, torch.Generator().manual_seed(0))
    full = token_logp(policy.log_softmax(rollout), rollout.tokens)  # (Q, K, T), every row run
    fast = policy.token_log_probs(rollout)
    assert fast.shape == full.shape
    torch.testing.assert_close(fast, full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("n_tokens, S", [(5, 3), (3000, 6)])  # an int64 code per row; then rows too long for one
def test_distinct_rows_index_back_to_every_row(n_tokens, S):
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, n_tokens, (7, 40, S), generator=g)
    tokens[:, 20:] = tokens[:, :20]  # repeats
    rows, index = distinct(tokens)
    assert torch.equal(rows.gather(1, index[..., None].expand(tokens.shape)), tokens)
    for q in range(7):  # K' covers each question's distinct rows, no more
        n_q = len(torch.unique(tokens[q], dim=0))
        assert len(torch.unique(rows[q], dim=0)) == n_q and int(index[q].max()) == n_q - 1
