"""``policy.checkpoint=/path/to/model``: pi_ref from any local Hugging Face causal LM with its tokenizer.

    path = check_checkpoint_dir(cfg.policy.checkpoint)             # InputError (one line) naming it
    ref = reference_from_checkpoint(task, cfg.policy.checkpoint)   # TransformerPolicy, nothing downloaded
    model, tokenizer = load_causal_lm(cfg.policy.checkpoint)       # for tasks that take the model's tokenizer

Only local directories: a hub id such as "Qwen/Qwen2.5-0.5B-Instruct" that is not a directory here is
refused, never fetched (local_files_only, HF_HUB_OFFLINE). Weights are safetensors only.
"""

from __future__ import annotations

import os
from pathlib import Path

from grpo_amp.io import InputError

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


def reference_from_checkpoint(task, path: str | os.PathLike, device: str = "auto"):
    """pi_ref for ``task`` (ModArithTask) from a local checkpoint; its tokenizer must be the task's."""
    from grpo_amp.policies.transformer import TransformerPolicy

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return TransformerPolicy.load(check_checkpoint_dir(path), task, device=device)


def load_causal_lm(path: str | os.PathLike, device: str = "cpu"):
    """(model, tokenizer) of a local checkpoint, fp32, eval mode; InputError naming the path on any failure."""
    directory = check_checkpoint_dir(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, use_safetensors=True)
    except Exception as exc:  # OSError, SafetensorError, ValueError, ...: all say "this directory is unusable"
        raise InputError(f"policy.checkpoint: cannot load {directory}: {' '.join(str(exc).split())[:200]}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # generation pads; causal LMs often ship without a pad token
    return model.float().to(device).eval(), tokenizer
