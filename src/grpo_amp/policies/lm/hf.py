"""The Hugging Face backend: any local causal LM through its own forward (GPT-2, GQA Llamas, CUDA...)."""

from __future__ import annotations

import contextlib
import inspect

import torch

from grpo_amp.policies.lm.backend import Backend


def repeat_cache(cache, repeats: int):
    """Repeat each row of a KV cache ``repeats`` times (differentiable, in place where HF allows)."""
    if repeats == 1:
        return cache
    if hasattr(cache, "batch_repeat_interleave"):
        cache.batch_repeat_interleave(repeats)
        return cache
    return tuple(tuple(t.repeat_interleave(repeats, dim=0) for t in layer) for layer in cache)  # legacy tuples


class HFBackend(Backend):
    """The model's own forward with its KV cache: the prompt's cache is repeated K times, once per call."""

    def __init__(self, model):
        super().__init__(model)
        # transformers 5 renamed past_key_values to cache; read the name off the model's forward
        self._cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def forward(self, input_ids: torch.Tensor, cache=None):
        """Logits (B, S, V) and the updated KV cache; bf16 autocast on cuda."""
        kwargs = {} if cache is None else {self._cache_kw: cache}
        on_cuda = input_ids.device.type == "cuda"
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda else contextlib.nullcontext()
        with autocast:
            out = self.model(input_ids=input_ids, use_cache=True, **kwargs)
        return out.logits, out[self._cache_kw]

    def prompt(self, prompt_ids: torch.Tensor):
        logits, cache = self.forward(prompt_ids)  # (Q, P, V)
        return logits[:, -1], cache

    def extend(self, state, tokens: torch.Tensor) -> torch.Tensor:
        Q, K, S = tokens.shape
        logits, _ = self.forward(tokens.reshape(Q * K, S), repeat_cache(state, K))  # (Q*K, S, V)
        return logits.view(Q, K, S, -1)

    def decode(self, state, tokens: torch.Tensor, cache, max_len: int):
        Q, K = tokens.shape
        if cache is None:
            cache = repeat_cache(state, K)
        logits, cache = self.forward(tokens.reshape(Q * K, 1), cache)  # finished rows feed pad: harmless, masked
        return logits[:, -1].view(Q, K, -1), cache
