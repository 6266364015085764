"""The pieces of ``grpo-amp bench trl`` that run without TRL: FLOP count, model shape, reward, report.

The benchmark itself (TRL's trainer for several steps) is not run here: it is a benchmark, not a test.
"""

from __future__ import annotations

import pytest
import torch

from grpo_amp.bench.flops import ModelShape, Work, iteration_flops
from grpo_amp.trl_family.bench import TrlResult, TrlSetup, VerifierReward, bench_task, format_trl, save_start_model
from grpo_amp.config import ModelConfig, TaskConfig
from grpo_amp.policies.lm.checkpoint import load_checkpoint
from grpo_amp.policies.lm.model import build_model
from grpo_amp.grpo.rollout import Rollout
from grpo_amp.tasks.modarith import ModArithTask


def test_iteration_flops_by_hand():
    # 1 layer, d = 2, MLP 3, vocab 5: body = 4*2*2 + 3*2*3 = 34 weights, head = 10, attention 4*2 = 8
    # per (query, key) pair. Q = 1, G = 2, P = 1, T = 2.
    model = ModelShape("x", layers=1, hidden=2, heads=1, intermediate=3, vocab=5, tied_head=True, n_params=0)
    work = Work(n_questions=1, group_size=2, prompt_len=1, completion_len=2)
    # ours: prefix 1*(2*34 + 2*10 + 8*1) = 96; one decode step over 2 rows 2*(68 + 20 + 8*2) = 208;
    # sample = score = 304; sample + score + 3 * score = 5 * 304
    assert iteration_flops(model, work, ours=True) == 1520
    # TRL: generate 2*96 + 208 = 400; score over 2 rows of 3 tokens 2*(2*34*3 + 20 + 8*6) + 2*2*10*2 = 624
    assert iteration_flops(model, work, ours=False) == 400 + 4 * 624


def test_start_model_is_hf_defaults_built_by_build_model(tmp_path):
    """The benchmark's weights are what the inline LlamaConfig of before built (untied, init 0.02, seed 0)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    setup = TrlSetup()
    task, questions, prompts = bench_task(setup)
    assert len(prompts) == len(questions) == setup.n_questions
    save_start_model(setup, task, str(tmp_path))
    model = load_checkpoint(tmp_path, task)
    tok = task.tokenizer
    config = LlamaConfig(vocab_size=task.vocab_size, hidden_size=setup.hidden, intermediate_size=setup.intermediate,
                         num_hidden_layers=setup.layers, num_attention_heads=setup.heads,
                         num_key_value_heads=setup.heads, max_position_embeddings=64, tie_word_embeddings=False,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(setup.seed)
        before = LlamaForCausalLM(config).state_dict()
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)

    shape = ModelShape.of(model)
    assert (shape.layers, shape.hidden, shape.heads, shape.intermediate, shape.vocab, shape.tied_head) == \
        (setup.layers, setup.hidden, setup.heads, setup.intermediate, task.vocab_size, False)
    assert shape.n_params == sum(p.numel() for p in model.parameters())


def test_verifier_reward_on_trl_completions():
    task = ModArithTask(TaskConfig(name="modarith", modulus=5, n_train=20, n_heldout=5, seed=0))
    value = int(task.questions.loc[2, "answers"].split("|")[0])
    digit = lambda d: task.tokenizer.convert_tokens_to_ids(str(d))  # noqa: E731
    eos = task.eos_id
    completions = [[digit(value), eos], [digit(0), digit(value), eos], [digit((value + 1) % 5), eos],
                   [digit(0), digit(value), digit(0)], [eos]]  # right, zero-padded, wrong, no <eos>, empty
    rewards = VerifierReward(task)(prompts=None, completions=None, completion_ids=completions, question=[2] * 5)
    assert rewards == [1.0, 1.0, 0.0, 0.0, 0.0]
    # the same as the task's own verifier on our Rollout layout
    T = task.max_new_tokens
    tokens = torch.full((1, 1, T), task.pad_id)
    tokens[0, 0, :2] = torch.tensor(completions[0])
    assert task.reward(Rollout(torch.tensor([2]), tokens, tokens != task.pad_id)).item() == rewards[0]


def test_format_trl_reads_the_configuration_from_the_objects():
    task = ModArithTask(TaskConfig(name="modarith", modulus=11, n_train=12, n_heldout=0, answer_digits=3))
    model = build_model(task, ModelConfig(n_layer=3, n_embd=16, n_head=2, intermediate_size=24), seed=0)
    work = Work(12, 4, task.prompt_ids.shape[1], task.max_new_tokens)
    result = TrlResult(TrlSetup(group_size=4), threads=1, model=ModelShape.of(model), work=work,
                       ours_s=[0.01, 0.011], trl_s=[0.05, 0.04], copy_s=[0.001, 0.001], ours_flops=1e9,
                       trl_flops=2e9, peak_flops=1e11, trl_version="9.9", trl_config=["  (config lines)"])
    text = format_trl(result)
    n_params = sum(p.numel() for p in model.parameters())
    assert f"3 layers, hidden 16, 2 heads, MLP 24, vocab {task.vocab_size}, tied LM head: {n_params:,}" in text
    assert "12 questions x G=4, prompts of 7 tokens, at most 4 completion tokens" in text
    assert text.splitlines()[-1] == f"speedup_vs_trl: {result.speedup:.2f}" and result.speedup == pytest.approx(4.5 / 1.05)
