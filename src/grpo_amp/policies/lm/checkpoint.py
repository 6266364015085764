"""HF checkpoint directories (config.json + *.safetensors + tokenizer), written and read with their checks.

    save_checkpoint(model, task, directory)                         # ours: a policy per iteration
    model = load_checkpoint(directory, task)                        # ours, or any whose tokenizer is the task's
    path = check_checkpoint_dir(cfg.policy.checkpoint)              # a user's: InputError (one line) naming it
    ref = reference_from_checkpoint(task, cfg.policy.checkpoint)    # TransformerPolicy, nothing downloaded
    model, tokenizer = load_causal_lm(cfg.policy.checkpoint)        # for tasks that take the model's tokenizer

Only local directories: a hub id such as "Qwen/Qwen2.5-0.5B-Instruct" that is not a directory here is
refused, never fetched (local_files_only, HF_HUB_OFFLINE). Never pickle: safetensors only.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from grpo_amp.io import InputError, one_line

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from grpo_amp.tasks.modarith import ModArithTask


@contextlib.contextmanager
def quiet_transformers():
    """No "Loading weights" bars from transformers: a run saves and loads a checkpoint per iteration."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def save_checkpoint(model: "PreTrainedModel", task: "ModArithTask", directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(directory)  # safetensors: the default, and the only format in transformers 5
    task.tokenizer.save_pretrained(directory)


def load_checkpoint(directory: str | Path, task: "ModArithTask") -> "PreTrainedModel":
    """The model in ``directory``, fp32; InputError naming the path if missing, corrupt or not the task's."""
    from transformers import AutoModelForCausalLM

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise InputError(f"missing checkpoint: {directory / 'config.json'}")
    if not any(directory.glob("*.safetensors")):
        raise InputError(f"missing checkpoint weights: no *.safetensors file in {directory}")
    try:
        with quiet_transformers():
            model, info = AutoModelForCausalLM.from_pretrained(
                directory, use_safetensors=True, output_loading_info=True, local_files_only=True)
    except Exception as exc:  # transformers/safetensors raise OSError, SafetensorError, RuntimeError, ValueError...
        raise InputError(f"corrupt checkpoint in {directory}: {one_line(exc)}") from None
    if info.get("missing_keys"):  # transformers would silently initialise them at random
        raise InputError(f"corrupt checkpoint in {directory}: missing weights {sorted(info['missing_keys'])[:3]}")
    n_logits = model.get_output_embeddings().weight.shape[0]
    if n_logits < task.vocab_size:
        raise InputError(f"checkpoint in {directory} has a vocabulary of {n_logits} tokens, "
                         f"fewer than the task's {task.vocab_size}")
    check_tokenizer(directory, task)
    return model.float()  # fp32 master weights even from a bf16 checkpoint; autocast does the bf16


def check_tokenizer(directory: Path, task: "ModArithTask") -> None:
    """A checkpoint saved with a tokenizer must agree with the task's ids, or rewards would read the wrong digits."""
    if not (directory / "tokenizer.json").is_file():
        return
    from transformers import AutoTokenizer

    try:
        saved = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except Exception as exc:
        raise InputError(f"corrupt tokenizer in {directory}: {one_line(exc)}") from None
    if saved.get_vocab() != task.tokenizer.get_vocab():
        raise InputError(f"tokenizer in {directory} does not match the task's tokenizer")


# --------------------------------------------------------------------------- a user's checkpoint
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def check_checkpoint_dir(path: str | os.PathLike) -> Path:
    """The directory of a local HF causal LM with its tokenizer; InputError naming what is wrong."""
    directory = Path(os.path.expanduser(str(path)))
    if not str(path):
        raise InputError("policy.checkpoint is empty: give a local model directory")
    if not directory.exists():
        raise InputError(f"policy.checkpoint: no such local directory {directory} (nothing is downloaded)")
    if not directory.is_dir():
        raise InputError(f"policy.checkpoint: {directory} is not a directory")
    if not os.access(directory, os.R_OK | os.X_OK):
        raise InputError(f"policy.checkpoint: {directory} is not readable")
    config = directory / "config.json"
    if not config.is_file():
        raise InputError(f"policy.checkpoint: missing {config} (not a Hugging Face model directory)")
    unreadable = [p for p in directory.iterdir() if p.is_file() and not os.access(p, os.R_OK)]
    if unreadable:
        raise InputError(f"policy.checkpoint: {unreadable[0]} is not readable")
    if not any((directory / f).is_file() for f in TOKENIZER_FILES):
        raise InputError(f"policy.checkpoint: no tokenizer in {directory} (expected one of {', '.join(TOKENIZER_FILES)})")
    if not any(directory.glob("*.safetensors")):
        raise InputError(f"policy.checkpoint: no *.safetensors weights in {directory} (pickled weights are refused)")
    return directory


def load_causal_lm(path: str | os.PathLike, device: str = "cpu"):
    """(model, tokenizer) of a local checkpoint, fp32, eval mode; InputError naming the path on any failure."""
    directory = check_checkpoint_dir(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, use_safetensors=True)
    except Exception as exc:  # OSError, SafetensorError, ValueError, ...: all say "this directory is unusable"
        raise InputError(f"policy.checkpoint: cannot load {directory}: {one_line(exc)}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # generation pads; causal LMs often ship without a pad token
    return model.float().to(device).eval(), tokenizer
