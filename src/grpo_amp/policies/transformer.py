"""The transformer policy: a small Llama-style causal LM answering ModArithTask questions.

The model is a plain transformers ``LlamaForCausalLM`` built from scratch (``lm.model.build_model``),
so checkpoints are ordinary HF directories and any local causal-LM checkpoint whose tokenizer
matches the task's loads through the same code (``lm.checkpoint``).

    task = ModArithTask(cfg.task)
    ref = train_reference(task, cfg.policy.model, cfg.policy.reference, seed=0)   # pi_ref (reference_training)
    rollout = ref.sample(task.split_ids("train"), group_size=8, generator=g)     # (Q, G, T)
    logq = ref.log_softmax(rollout)                                                # (Q, G, T, V)
    pos, kl_c = grpo_amp.grpo.pos.pos_exact(ref, questions)                            # PoS lives in pos.py
    ref.save(path); ref = TransformerPolicy.load(path, task)

The forward runs through a backend (``lm.backend``): each prompt once, then its K continuations.
On the CPU a plain Llama goes through ``lm.lean.LeanLlama``; elsewhere, and for other
architectures, through ``lm.hf.HFBackend`` (the model's own forward).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from grpo_amp.config import ModelConfig
from grpo_amp.devices import resolve_device
from grpo_amp.policies.base import Policy
from grpo_amp.policies.lm.backend import Backend
from grpo_amp.policies.lm.checkpoint import check_checkpoint_dir, load_checkpoint, save_checkpoint
from grpo_amp.policies.lm.hf import HFBackend
from grpo_amp.policies.lm.lean import LeanLlama
from grpo_amp.policies.lm.model import build_model
from grpo_amp.grpo.rollout import Rollout
from grpo_amp.tasks.modarith import ModArithTask

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class TransformerPolicy(Policy):
    """pi(o|q) = a causal LM's probability of the completion tokens o (digits then <eos>) after q's prompt."""

    def __init__(self, task: ModArithTask, model: "PreTrainedModel", device: str | torch.device = "auto",
                 lean: bool = True):
        """lean=False: always HF's forward (to compare the two, or for a model the lean one gets wrong)."""
        super().__init__()
        self.task = task
        self.model = model
        self._hf = HFBackend(model)
        self._lean = LeanLlama(model) if lean and LeanLlama.supports(model) else None  # used on the CPU
        self.register_buffer("prompt_ids", task.prompt_ids.clone(), persistent=False)    # (n, P)
        self.register_buffer("answer_ids", task.answer_ids.clone(), persistent=False)    # (n, A, L)
        self.register_buffer("answer_mask", task.answer_mask.clone(), persistent=False)  # (n, A, L)
        self.to(resolve_device(device))

    @classmethod
    def from_config(cls, task: ModArithTask, model_cfg: ModelConfig, seed: int = 0,
                    device: str | torch.device = "auto") -> "TransformerPolicy":
        return cls(task, build_model(task, model_cfg, seed), device)

    @property
    def device(self) -> torch.device:
        return self.prompt_ids.device

    def backend(self) -> Backend:
        """The lean forward where it applies (a plain Llama on the CPU), else HF's; chosen per call (.to moves it)."""
        return self._lean if self._lean is not None and self.device.type == "cpu" else self._hf

    # ---- forward passes --------------------------------------------------------------------
    def completion_log_softmax(self, questions: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log pi(. | prompt, o_<t) at every completion position: (Q, K, T, V) fp32, with gradient."""
        questions = questions.to(self.device)
        Q, K, T = completions.shape
        backend = self.backend()
        first, state = backend.prompt(self.prompt_ids[questions])  # (Q, V): each prompt once
        logits = first[:, None, None].expand(Q, K, 1, first.shape[-1])
        if T > 1:
            rest = backend.extend(state, completions.to(self.device)[..., :-1])  # (Q, K, T-1, V)
            logits = torch.cat([logits, rest], dim=2)
        return logits.float().log_softmax(-1)

    # ---- the Policy interface --------------------------------------------------------------
    @torch.no_grad()
    def sample(self, questions: torch.Tensor, group_size: int, generator: torch.Generator) -> Rollout:
        """G completions per question at temperature 1: at most T tokens, nothing real after <eos>."""
        questions = questions.to(self.device)
        Q, G, T = len(questions), group_size, self.task.max_new_tokens
        pad, eos = self.task.pad_id, self.task.eos_id
        backend = self.backend()
        logits, state = backend.prompt(self.prompt_ids[questions])  # (Q, V): each prompt once
        logits, cache = logits.repeat_interleave(G, dim=0), None    # (Q*G, V)
        tokens = torch.full((Q * G, T), pad, dtype=torch.long, device=self.device)
        mask = torch.zeros((Q * G, T), dtype=torch.bool, device=self.device)
        done = torch.zeros(Q * G, dtype=torch.bool, device=self.device)
        for t in range(T):
            drawn = _draw(logits, generator).to(self.device)  # (Q*G,)
            mask[:, t] = ~done
            tokens[:, t] = torch.where(done, pad, drawn)
            done |= drawn == eos
            if t == T - 1 or bool(done.all()):
                break
            logits, cache = backend.decode(state, tokens[:, t].view(Q, G), cache, T - 1)  # (Q, G, V)
            logits = logits.view(Q * G, -1)
        return Rollout(questions, tokens.view(Q, G, T), mask.view(Q, G, T))

    @torch.no_grad()
    def sample_groups(self, questions: torch.Tensor, n_groups: int, group_size: int,
                      generator: torch.Generator) -> Rollout:
        """``n_groups`` calls of ``sample`` in one batch, with the same generator draws: (Q, n_groups*G, T).

        torch.multinomial with one sample per row is argmax(probs / E), E ~ Exp(1) drawn from the
        generator for every (row, token) in order (PyTorch's Distributions.cpp, its Gumbel-max fast
        path): the noise of every call is drawn up front in the calls' order, so the generator ends
        where the calls would leave it. The next-token logits come once per distinct prefix of a
        question (few: 256 draws of at most 3 tokens share about 20), so they agree with ``sample``'s
        to float32 round-off, not bit for bit: a draw whose two best candidates tie to round-off may
        differ. Valid when no call would stop early (every row of a group done before the last
        token); else the calls run one by one (``Policy.sample_groups``).
        """
        T, G = self.task.max_new_tokens, group_size
        if n_groups == 1 or generator.device.type != "cpu" or self.device.type != "cpu" or self._lean is None:
            return super().sample_groups(questions, n_groups, group_size, generator)
        questions = questions.to(self.device)
        Q, K = len(questions), n_groups * G
        pad, eos = self.task.pad_id, self.task.eos_id
        start = generator.get_state()
        backend = self.backend()
        first, state = backend.prompt(self.prompt_ids[questions])  # (Q, V)
        V = first.shape[-1]
        noise = torch.empty((n_groups, T, Q, G, V)).exponential_(generator=generator)  # the calls' draws, in order
        logits = first[:, None].expand(Q, K, V)
        tokens = torch.full((Q, K, T), pad, dtype=torch.long)
        mask = torch.zeros((Q, K, T), dtype=torch.bool)
        done = torch.zeros((Q, K), dtype=torch.bool)
        for t in range(T):
            probs = logits.float().softmax(-1).view(Q, n_groups, G, V)
            drawn = (probs / noise[:, t].permute(1, 0, 2, 3)).argmax(-1).view(Q, K)  # torch.multinomial's draw
            mask[..., t] = ~done
            tokens[..., t] = torch.where(done, pad, drawn)
            done |= drawn == eos
            if t == T - 1:
                break
            if bool(done.view(Q, n_groups, G).all(dim=(0, 2)).any()):  # a call would have stopped here
                generator.set_state(start)
                return super().sample_groups(questions, n_groups, group_size, generator)
            prefixes, rows = distinct(tokens[..., : t + 1])               # (Q, K', t+1), (Q, K) into K'
            last = backend.extend(state, prefixes)[:, :, -1]             # (Q, K', V): after each distinct prefix
            logits = last.gather(1, rows[..., None].expand(Q, K, V))     # (Q, K, V)
        return Rollout(questions, tokens, mask)

    def log_softmax(self, rollout: Rollout) -> torch.Tensor:
        return self.completion_log_softmax(rollout.questions, rollout.tokens)  # (Q, G, T, V)

    @torch.no_grad()
    def token_log_probs(self, rollout: Rollout) -> torch.Tensor:
        """log pi of the sampled tokens (Q, K, T), each distinct completion of a question run once.

        A measurement's many groups repeat few completions (C1: 256 draws, about 20 distinct), so this
        is several times cheaper than ``log_softmax``. Not bit-identical to it: a row's rounding
        depends on its slot in the attention block (``lean.LeanLlama.extend``); the two agree to
        float32 round-off.
        """
        tokens = rollout.tokens.to(self.device)
        completions, rows = distinct(tokens)                                  # (Q, K', T), (Q, K)
        logq = self.completion_log_softmax(rollout.questions, completions)   # (Q, K', T, V)
        logp = logq.gather(-1, completions[..., None]).squeeze(-1)            # (Q, K', T)
        return logp.gather(1, rows[..., None].expand(tokens.shape))           # (Q, K, T)

    @torch.no_grad()
    def answer_log_probs(self, questions: torch.Tensor) -> torch.Tensor:
        """log pi(answer + <eos> | prompt) for each correct answer: (Q, A), -inf where a question has fewer."""
        questions = questions.to(self.device)
        answers, mask = self.answer_ids[questions], self.answer_mask[questions]  # (Q, A, L)
        logp = self.completion_log_softmax(questions, answers)                   # (Q, A, L, V)
        token_logp = logp.gather(-1, answers[..., None]).squeeze(-1)             # (Q, A, L)
        seq_logp = torch.where(mask, token_logp, 0.0).sum(-1)                    # (Q, A)
        return seq_logp.masked_fill(~mask.any(-1), float("-inf"))

    def reference_loss(self, questions: torch.Tensor, answers: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of labelled completions (B, L) over their real tokens (answer digits + <eos>)."""
        answers, mask = answers.to(self.device), mask.to(self.device)
        logp = self.completion_log_softmax(questions, answers[:, None])[:, 0]  # (B, L, V)
        token_logp = logp.gather(-1, answers[..., None]).squeeze(-1)           # (B, L)
        return -(token_logp * mask).sum() / mask.sum()

    # ---- files -----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        save_checkpoint(self.model, self.task, directory)

    @classmethod
    def load(cls, directory: str | Path, task: ModArithTask,
             device: str | torch.device = "auto") -> "TransformerPolicy":
        """Load a local HF causal-LM checkpoint (safetensors only); InputError naming the path if missing or corrupt."""
        return cls(task, load_checkpoint(directory, task), device)


def distinct(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of each question's K sequences: (Q, K', S) (padded by repeating the question's
    first distinct row) and, for each of the K, its index among them, (Q, K)."""
    Q, K, S = tokens.shape
    n = int(tokens.max()) + 1 if tokens.numel() else 1
    if S * math.log2(max(n, 2)) + math.log2(max(Q, 2)) < 62:  # one int64 code per (question, sequence): a fast 1-d unique
        code = torch.arange(Q, device=tokens.device)[:, None]
        for s in range(S):
            code = code * n + tokens[..., s]                          # (Q, K)
        keys, inverse = torch.unique(code.view(-1), return_inverse=True)  # sorted: by question, then sequence
        owner = keys // n ** S                                          # (U,)
        place = n ** torch.arange(S - 1, -1, -1, device=tokens.device)  # (S,): the code's digits, base n
        rows_of = keys[:, None] // place % n                           # (U, S)
    else:
        keyed = torch.cat([torch.arange(Q, device=tokens.device)[:, None, None].expand(Q, K, 1), tokens], -1)
        uniq, inverse = torch.unique(keyed.view(Q * K, S + 1), dim=0, return_inverse=True)
        owner, rows_of = uniq[:, 0], uniq[:, 1:]
    counts = torch.bincount(owner, minlength=Q)                        # (Q,): distinct sequences per question
    offset = counts.cumsum(0) - counts
    slot = torch.arange(len(owner), device=tokens.device) - offset[owner]  # (U,): index within its question
    padded = rows_of[offset][:, None].repeat(1, int(counts.max()), 1)  # (Q, K', S)
    padded[owner, slot] = rows_of
    return padded, slot[inverse].view(Q, K)


def _draw(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row from softmax(logits) at temperature 1, on the generator's device: (B,)."""
    probs = logits.float().softmax(-1)
    if probs.device != generator.device:  # a CPU generator drives CUDA sampling too, reproducibly
        probs = probs.to(generator.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def reference_from_checkpoint(task: ModArithTask, path: str | Path, device: str = "auto") -> TransformerPolicy:
    """pi_ref for ``task`` from a local checkpoint (policy.checkpoint); its tokenizer must be the task's."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return TransformerPolicy.load(check_checkpoint_dir(path), task, device=device)
