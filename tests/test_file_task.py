"""A task read from a file (JSON lines / parquet), its verifiers and errors, Monte Carlo PoS coverage,
and a local HF model + the shipped file through HFPolicy and TRL."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from helpers.user_model import char_tokenizer, one_line
import torch

from grpo_amp.config import (Config, GRPOConfig, ModelConfig, PolicyConfig, PolicyName, RatioLevel,
                             ReferenceTrainingConfig, TaskConfig, VariantConfig)
from grpo_amp.io import InputError
from grpo_amp.grpo.pos import pos_exact, pos_mc
from grpo_amp.tasks.file_task import FileTask, exact_match, make_verifier, numeric_match, read_questions, shipped_file


# ---- reading and verifying -------------------------------------------------------------------
def test_shipped_file_and_parquet_give_the_same_table(tmp_path):
    table = read_questions(shipped_file(), "question", "answer", "split")
    assert len(table) == 40 and (table["split"] == "train").sum() == 32 and (table["split"] == "heldout").sum() == 8
    assert list(table.index) == list(range(40))
    for prompt, answer in zip(table["prompt"], table["answers"]):  # our own file: every answer is right
        assert numeric_match(f"#### {eval(prompt[:-1])}", answer)
    pd.read_json(shipped_file(), lines=True).to_parquet(tmp_path / "arith.parquet")
    assert read_questions(tmp_path / "arith.parquet", "question", "answer", "split").equals(table)
    no_split = read_questions(shipped_file(), "question", "answer")
    assert (no_split["split"] == "train").all()


def test_verifiers():
    assert numeric_match("so 3 + 4 = 7. #### 7", "3+4 is 7. #### 7")
    assert numeric_match("I think the answer is 1,020", "#### 1020") and numeric_match("-7.0", "#### -7")
    assert not numeric_match("#### 8 but maybe 7", "#### 7") and not numeric_match("no idea", "#### 7")
    assert numeric_match("1/2", "#### 0.5")
    assert exact_match("  Paris. ", "paris") and not exact_match("Paris, France", "Paris")


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="no such file") as exc:
        read_questions(tmp_path / "absent.jsonl", "question", "answer")
    assert str(tmp_path / "absent.jsonl") in one_line(exc)
    with pytest.raises(InputError, match="answer_field='solution'") as exc:
        read_questions(shipped_file(), "question", "solution")
    one_line(exc)
    with pytest.raises(InputError, match="split_field='fold'"):
        read_questions(shipped_file(), "question", "answer", "fold")
    (tmp_path / "q.csv").write_text("question,answer\n1+1=,2\n")
    with pytest.raises(InputError, match="neither JSON lines"):
        read_questions(tmp_path / "q.csv", "question", "answer")
    (tmp_path / "bad.jsonl").write_text('{"question": "1+1=", "answer": "2", "split": "dev"}\n')
    with pytest.raises(InputError, match="unknown split 'dev'"):
        read_questions(tmp_path / "bad.jsonl", "question", "answer", "split")
    (tmp_path / "junk.jsonl").write_text("{not json\n")
    with pytest.raises(InputError, match="cannot read") as exc:
        read_questions(tmp_path / "junk.jsonl", "question", "answer")
    one_line(exc)
    with pytest.raises(InputError, match="unknown task.verifier 'regex'") as exc:
        make_verifier("regex")
    one_line(exc)
    try:
        import math_verify  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="math-verify") as exc:
            make_verifier("math_verify")
        one_line(exc)


# ---- Monte Carlo PoS: Wilson coverage where the exact PoS exists ------------------------------
def test_wilson_intervals_cover_the_exact_pos_at_the_stated_rate_on_modarith():
    """95% Wilson intervals from k = 48 samples cover the teacher-forced PoS in about 95% of 200 cases.

    pi_ref trained briefly so PoS spreads over (0, 1); 25 questions x 8 independent Monte Carlo runs.
    The binomial error of the coverage over 200 intervals is ~1.5%: the band is [0.89, 0.99].
    """
    from grpo_amp.policies.reference_training import train_reference
    from grpo_amp.tasks.modarith import ModArithTask

    task = ModArithTask(TaskConfig(name="modarith", modulus=5, n_train=20, n_heldout=5, seed=0))
    ref = train_reference(task, ModelConfig(n_layer=1, n_embd=32, n_head=2, intermediate_size=64),
                          ReferenceTrainingConfig(steps=200, batch_size=64, lr=3e-3), seed=0, device="cpu")
    questions = torch.arange(25)
    exact = pos_exact(ref, questions)[0]
    assert exact.max() - exact.min() > 0.3  # a spread of PoS, not all near 0 or 1
    covered = []
    for seed in range(8):
        _, lo, hi = pos_mc(ref, task, questions, 48, torch.Generator().manual_seed(100 + seed))
        covered.append((lo <= exact) & (exact <= hi))
    rate = float(np.mean(covered))
    assert 0.89 <= rate <= 0.99, rate


# ---- a user's model and the shipped file, end to end ------------------------------------------
@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = char_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    path = tmp_path_factory.mktemp("user") / "model"
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_hf_policy_left_padding_changes_nothing(user_model):
    """Teacher-forced log-probs of a left-padded batch = those of each prompt alone, unpadded."""
    from grpo_amp.policies.lm.checkpoint import load_causal_lm
    from grpo_amp.policies.hf import HFPolicy

    model, tok = load_causal_lm(user_model)
    task = FileTask(read_questions(shipped_file(), "question", "answer", "split"), tok, max_new_tokens=5)
    policy = HFPolicy(task, model, temperature=0.7)
    lengths = [len(p) for p in task.prompt_token_ids]
    q = torch.tensor([int(np.argmin(lengths)), int(np.argmax(lengths))])
    assert lengths[q[0]] < lengths[q[1]]  # so the first is padded
    rollout = policy.sample(q, 3, torch.Generator().manual_seed(0))
    with torch.no_grad():
        batch = policy.log_softmax(rollout)
        alone = policy.log_softmax(type(rollout)(q[:1], rollout.tokens[:1], rollout.mask[:1]))
    m = rollout.mask[0]
    assert torch.allclose(batch[0][m], alone[0][m], atol=1e-5)


def test_user_model_and_file_task_through_trl(user_model, tmp_path):
    """A local checkpoint + the shipped file: TRL trains 1 round at temperature 0.5, PoS by Monte Carlo."""
    pytest.importorskip("trl")
    from grpo_amp.policies.lm.checkpoint import load_causal_lm
    from grpo_amp.policies.hf import HFPolicy
    from grpo_amp.trl_family.policy import train_trl

    model, tok = load_causal_lm(user_model)
    task = FileTask.from_config(TaskConfig(name="modarith", split_field="split", max_new_tokens=4), tok)
    ref = HFPolicy(task, load_causal_lm(user_model)[0], temperature=0.5)
    ref.requires_grad_(False)
    policy = HFPolicy(task, model, temperature=0.5)
    cfg = Config(variant=VariantConfig(beta=0.1),
                 grpo=GRPOConfig(iterations=1, group_size=2, inner_steps=1, lr=1e-3, ratio_level=RatioLevel.token,
                                 c1_groups=1),
                 policy=PolicyConfig(name=PolicyName.transformer, temperature=0.5),
                 task=TaskConfig(name="modarith"))
    seen = {}

    def save_iteration(n, pi):
        seen[n] = pos_mc(pi, task, torch.arange(len(task.questions)), 4, torch.Generator().manual_seed(0))[0]
        pi.save(tmp_path / f"iter_{n:03d}")

    history = train_trl(policy, ref, task, cfg, save_iteration=save_iteration)
    assert list(seen) == [1] and seen[1].shape == (40,) and len(history.c1_frame()) == 32
    back = HFPolicy.load(tmp_path / "iter_001", task, temperature=0.5)
    rollout = policy.sample(torch.arange(3), 2, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(back.log_softmax(rollout), policy.log_softmax(rollout), atol=1e-6)
