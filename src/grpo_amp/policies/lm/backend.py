"""The one access pattern of the transformer policy, behind a small interface.

Prompts all have the same length, so nothing is ever left-padded: each question's prompt runs once
and the K continuations that follow (G sampled completions, or the A correct answers) reuse its
keys and values.

    logits, state = backend.prompt(prompt_ids)                   # (Q, V): next-token logits after each prompt
    logits = backend.extend(state, tokens)                       # tokens (Q, K, S) -> (Q, K, S, V), with gradient
    logits, cache = backend.decode(state, tokens, None, max_len) # tokens (Q, K): one more token each -> (Q, K, V)
    logits, cache = backend.decode(state, tokens, cache, max_len)

``state`` is whatever the backend needs from the prompt pass; it is used once, by one ``extend``
or by one run of ``decode`` calls (a backend may consume it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Backend(ABC):
    """Runs a causal LM's forward for prompts shared by K continuations each."""

    def __init__(self, model):
        self.model = model

    @abstractmethod
    def prompt(self, prompt_ids: torch.Tensor):
        """Run (Q, P) prompts: next-token logits (Q, V) and the state the continuations read."""

    @abstractmethod
    def extend(self, state, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-force K continuations of S tokens after each prompt: tokens (Q, K, S) -> logits (Q, K, S, V)."""

    @abstractmethod
    def decode(self, state, tokens: torch.Tensor, cache, max_len: int):
        """Feed one more token (Q, K) to each continuation: logits (Q, K, V) and the cache for the next call.

        cache: None at the first token, then what the previous call returned; max_len: the most
        tokens a continuation will be fed.
        """
