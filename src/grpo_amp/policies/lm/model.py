"""build_model: the project's one LlamaConfig, for the policy, pi_ref and the benchmarks alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from grpo_amp.config import ConfigError, ModelConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from grpo_amp.tasks.modarith import ModArithTask


def build_model(task: "ModArithTask", model_cfg: ModelConfig, seed: int, *, tie_word_embeddings: bool = True,
                initializer_range: float | None = None) -> "PreTrainedModel":
    """A freshly initialised LlamaForCausalLM sized for the task; same seed, same weights.

    initializer_range None: fan-in, n_embd ** -0.5 (HF's default 0.02 suits widths near 768 and
    leaves a model this small on a long plateau where it ignores the prompt: measured, p stuck at
    1/m for 600+ steps). ``bench trl`` passes HF's defaults (untied head, 0.02), as TRL users would.
    """
    from transformers import LlamaConfig, LlamaForCausalLM  # imported here: transformers takes seconds to import

    if model_cfg.n_embd % model_cfg.n_head:
        raise ConfigError(f"policy.model.n_embd ({model_cfg.n_embd}) must be divisible by "
                         f"policy.model.n_head ({model_cfg.n_head})")
    tok = task.tokenizer
    config = LlamaConfig(
        vocab_size=task.vocab_size,
        hidden_size=model_cfg.n_embd,
        intermediate_size=model_cfg.intermediate_size,
        num_hidden_layers=model_cfg.n_layer,
        num_attention_heads=model_cfg.n_head,
        num_key_value_heads=model_cfg.n_head,
        max_position_embeddings=max(64, task.prompt_ids.shape[1] + task.max_new_tokens),
        tie_word_embeddings=tie_word_embeddings,
        initializer_range=model_cfg.n_embd ** -0.5 if initializer_range is None else initializer_range,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)
