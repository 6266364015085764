"""HF checkpoint directories (config.json + *.safetensors + tokenizer), written and read with their checks.

Any local causal-LM checkpoint whose tokenizer matches the task's loads; a missing or corrupt one
raises a one-line InputError naming the directory. Never pickle: safetensors only.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from grpo_amp.io import InputError

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


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:limit]


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
        raise InputError(f"corrupt checkpoint in {directory}: {_one_line(exc)}") from None
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
        raise InputError(f"corrupt tokenizer in {directory}: {_one_line(exc)}") from None
    if saved.get_vocab() != task.tokenizer.get_vocab():
        raise InputError(f"tokenizer in {directory} does not match the task's tokenizer")
