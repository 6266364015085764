"""FLOP accounting for ``bench trl``: the model's matmul work per iteration, and the CPU's matmul peak.

    model = ModelShape.of(policy.model); work = Work(Q, G, P, T)
    iteration_flops(model, work, ours=True) / seconds / matmul_peak(threads)   # share of the peak
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ModelShape:
    """What the report says about the model, read off its config."""
    name: str
    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int
    tied_head: bool
    n_params: int

    @classmethod
    def of(cls, model) -> "ModelShape":
        cfg = model.config
        return cls(type(model).__name__, cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads,
                   cfg.intermediate_size, cfg.vocab_size, bool(cfg.tie_word_embeddings),
                   sum(p.numel() for p in model.parameters()))


@dataclass(frozen=True)
class Work:
    """One iteration's work: Q questions x G completions, prompts of P tokens, at most T completion tokens."""
    n_questions: int
    group_size: int
    prompt_len: int
    completion_len: int


def matmul_peak(threads: int, sizes=(1024, 1536, 2048), repeat: int = 3) -> float:
    """Best fp32 torch.mm FLOP/s over square sizes, at the current thread count."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b  # warm-up
        for _ in range(repeat):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def iteration_flops(model: ModelShape, work: Work, ours: bool) -> float:
    """Model FLOPs of one iteration: 2 per matmul weight per token forward, twice that backward, plus attention.

    Ours: sampling (each prompt once, then T-1 decoding steps over Q*G rows), the reference pass and the
    policy pass (each prompt once, then its G completions), the policy pass backward. TRL: generation
    over Q*G prompt copies, then the reference pass and the policy pass over Q*G (prompt + completion)
    rows, the policy pass backward. Counted at the longest completion (rows finish early only in
    groups, and both sides run every row to the end); masked-out attention scores are not counted.
    """
    d, m = model.hidden, model.intermediate
    body, head = model.layers * (4 * d * d + 3 * d * m), d * model.vocab  # matmul weights: layers, LM head
    Q, G, P, T = work.n_questions, work.group_size, work.prompt_len, work.completion_len
    attn = 4 * d * model.layers  # per (query, key) pair: q.k and p*v over all heads

    def prefix_pass(rows: int, length: int) -> float:  # causal over `length` tokens, head at the last one
        return rows * (2 * body * length + 2 * head + attn * length * (length + 1) / 2)

    def continuation(rows: int, start: int, steps: int) -> float:  # `steps` tokens after `start` cached ones
        return rows * sum(2 * body + 2 * head + attn * (start + j + 1) for j in range(steps))

    if ours:
        sample = prefix_pass(Q, P) + continuation(Q * G, P, T - 1)
        score = prefix_pass(Q, P) + continuation(Q * G, P, T - 1)  # teacher-forced: same tokens
        return sample + score + 3 * score  # sampling, reference, policy forward + backward (2x)
    generate = prefix_pass(Q * G, P) + continuation(Q * G, P, T - 1)
    score = prefix_pass(Q * G, P + T) + Q * G * 2 * head * T  # full rows, head at the completion
    return generate + score + 3 * score
