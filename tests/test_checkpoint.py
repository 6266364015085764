"""policy.checkpoint: pi_ref from a local Hugging Face directory, through the reference stage; bad paths are one line."""

from __future__ import annotations

import pytest
import torch

from grpo_amp import paths
from grpo_amp.config import ModelConfig, compose_config
from grpo_amp.io import InputError
from grpo_amp.policies.lm.checkpoint import check_checkpoint_dir, load_causal_lm
from grpo_amp.policies.transformer import TransformerPolicy, reference_from_checkpoint
from grpo_amp.tasks.modarith import ModArithTask


def one_line(exc) -> str:
    assert "\n" not in str(exc.value)
    return str(exc.value)


@pytest.fixture
def checkpoint(tmp_path):
    """A user's model directory: a GPT-2 (not our Llama) with the task's tokenizer, seeded."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = compose_config(["policy=transformer", "scale=smoke"])
    task = ModArithTask(cfg.task)
    torch.manual_seed(3)
    config = GPT2Config(vocab_size=task.vocab_size, n_embd=32, n_layer=1, n_head=2, n_positions=32,
                        bos_token_id=task.tokenizer.bos_token_id, eos_token_id=task.eos_id)
    GPT2LMHeadModel(config).save_pretrained(tmp_path / "user_model")
    task.tokenizer.save_pretrained(tmp_path / "user_model")
    return tmp_path / "user_model"


def test_reference_stage_takes_pi_ref_from_the_checkpoint(checkpoint, tmp_path):
    """pi_ref written by the reference rule is the user's model: the same answer log-probs, no training."""
    from grpo_amp.stages import reference

    cfg = compose_config(["policy=transformer", "scale=smoke", f"policy.checkpoint={checkpoint}",
                          f"results={tmp_path / 'results'}", "policy.device=cpu"])
    reference.run(cfg)
    out = paths.path(paths.REFERENCE, cfg)
    task = ModArithTask.load(out)
    written = TransformerPolicy.load(out, task, device="cpu")
    user = reference_from_checkpoint(task, checkpoint, device="cpu")
    questions = torch.arange(len(task.questions))
    assert type(written.model).__name__ == "GPT2LMHeadModel"
    assert torch.equal(written.answer_log_probs(questions), user.answer_log_probs(questions))
    fresh = TransformerPolicy.from_config(task, ModelConfig(n_layer=1, n_embd=32, n_head=2, intermediate_size=64),
                                          seed=0, device="cpu")
    assert not torch.allclose(fresh.answer_log_probs(questions), user.answer_log_probs(questions))  # not ours

    model, tok = load_causal_lm(checkpoint)
    assert tok.get_vocab() == task.tokenizer.get_vocab() and not model.training


def test_bad_checkpoint_paths_are_one_line_errors_naming_them(checkpoint, tmp_path):
    for bad, what in [(tmp_path / "absent", "no such local directory"), ("Qwen/Qwen2.5-0.5B-Instruct", "no such local"),
                      (checkpoint / "config.json", "not a directory")]:
        with pytest.raises(InputError, match=what) as exc:
            check_checkpoint_dir(bad)
        assert str(bad) in one_line(exc)
    (checkpoint / "tokenizer.json").unlink()
    (checkpoint / "tokenizer_config.json").unlink()
    with pytest.raises(InputError, match="no tokenizer") as exc:
        check_checkpoint_dir(checkpoint)
    assert str(checkpoint) in one_line(exc)


def test_unreadable_checkpoint_is_one_line(checkpoint):
    cfg = compose_config(["policy=transformer", "scale=smoke"])
    task = ModArithTask(cfg.task)
    (checkpoint / "config.json").write_text("{ not json")
    with pytest.raises(InputError, match="corrupt") as exc:
        reference_from_checkpoint(task, checkpoint, device="cpu")
    assert str(checkpoint) in one_line(exc)
    with pytest.raises(InputError, match="cannot load") as exc:
        load_causal_lm(checkpoint)
    assert str(checkpoint) in one_line(exc)
