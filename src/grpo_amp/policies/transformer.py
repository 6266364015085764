"""The transformer policy: a small Llama-style causal LM answering ModArithTask questions.

The model is a plain transformers ``LlamaForCausalLM`` built from scratch, so checkpoints are
ordinary HF directories (config.json + model.safetensors + tokenizer) and any local causal-LM
checkpoint whose tokenizer matches the task's loads through the same code.

    task = ModArithTask(cfg.task)
    ref = train_reference(task, cfg.policy.model, cfg.policy.reference, seed=0)   # pi_ref
    rollout = ref.sample(task.split_ids("train"), group_size=8, generator=g)     # (Q, G, T)
    logq = ref.log_softmax(rollout)                                                # (Q, G, T, V)
    pos = ref.exact_pos(questions)                                                 # (Q,)
    pos_mc, n_success, n = mc_pos(ref, questions, n_samples=256, generator=g)
    ref.save(path); ref = TransformerPolicy.load(path, task)

Prompts all have the same length, so nothing is ever left-padded: each question's prompt runs
once and its KV cache is repeated for the G completions (or the A correct answers) that follow.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from grpo_amp.config import ModelConfig, ReferenceTrainingConfig
from grpo_amp.io import InputError
from grpo_amp.policies.base import Policy
from grpo_amp.rollout import Rollout
from grpo_amp.tasks.modarith import ModArithTask

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" means cuda when available, else cpu."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_model(task: ModArithTask, model_cfg: ModelConfig, seed: int) -> "PreTrainedModel":
    """A freshly initialised LlamaForCausalLM sized for the task; same seed, same weights."""
    from transformers import LlamaConfig, LlamaForCausalLM  # imported here: transformers takes seconds to import

    if model_cfg.n_embd % model_cfg.n_head:
        raise ValueError(f"policy.model.n_embd ({model_cfg.n_embd}) must be divisible by "
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
        tie_word_embeddings=True,
        # fan-in init: HF's default 0.02 suits widths near 768 and leaves a model this small on a
        # long plateau where it ignores the prompt (measured: p stuck at 1/m for 600+ steps)
        initializer_range=model_cfg.n_embd ** -0.5,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


@contextlib.contextmanager
def _quiet_transformers():
    """No "Loading weights" bars from transformers: a run saves and loads a checkpoint per iteration."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _repeat_cache(cache, repeats: int):
    """Repeat each row of a KV cache ``repeats`` times (differentiable): one prompt, many continuations."""
    if repeats == 1:
        return cache
    if hasattr(cache, "batch_repeat_interleave"):
        cache.batch_repeat_interleave(repeats)
        return cache
    return tuple(tuple(t.repeat_interleave(repeats, dim=0) for t in layer) for layer in cache)  # legacy tuples


class TransformerPolicy(Policy):
    """pi(o|q) = a causal LM's probability of the completion tokens o (digits then <eos>) after q's prompt."""

    family = "transformer"

    def __init__(self, task: ModArithTask, model: "PreTrainedModel", device: str | torch.device = "auto"):
        super().__init__()
        self.task = task
        self.model = model
        # transformers 5 renamed past_key_values to cache; read the name off the model's forward
        self._cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
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

    # ---- forward passes --------------------------------------------------------------------
    def _forward(self, input_ids: torch.Tensor, cache=None):
        """Logits (B, S, V) and the updated KV cache; bf16 autocast on cuda."""
        kwargs = {} if cache is None else {self._cache_kw: cache}
        on_cuda = self.device.type == "cuda"
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda else contextlib.nullcontext()
        with autocast:
            out = self.model(input_ids=input_ids, use_cache=True, **kwargs)
        return out.logits, out[self._cache_kw]

    def _prompt_state(self, questions: torch.Tensor, repeats: int):
        """Run each prompt once: next-token logits (Q*R, V) and a KV cache repeated R times per question."""
        logits, cache = self._forward(self.prompt_ids[questions])  # (Q, P, V)
        return logits[:, -1].repeat_interleave(repeats, dim=0), _repeat_cache(cache, repeats)

    def completion_log_softmax(self, questions: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log pi(. | prompt, o_<t) at every completion position: (Q, K, T, V) fp32, with gradient."""
        questions = questions.to(self.device)
        Q, K, T = completions.shape
        first, cache = self._prompt_state(questions, K)  # (Q*K, V)
        logits = first[:, None]                          # (Q*K, 1, V)
        if T > 1:
            rest, _ = self._forward(completions.to(self.device).reshape(Q * K, T)[:, :-1], cache)  # (Q*K, T-1, V)
            logits = torch.cat([logits, rest], dim=1)    # (Q*K, T, V)
        return logits.float().log_softmax(-1).view(Q, K, T, -1)

    # ---- the Policy interface --------------------------------------------------------------
    @torch.no_grad()
    def sample(self, questions: torch.Tensor, group_size: int, generator: torch.Generator) -> Rollout:
        """G completions per question at temperature 1: at most T tokens, nothing real after <eos>."""
        questions = questions.to(self.device)
        Q, G, T = len(questions), group_size, self.task.max_new_tokens
        pad, eos = self.task.pad_id, self.task.eos_id
        logits, cache = self._prompt_state(questions, G)  # (Q*G, V)
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
            logits, cache = self._forward(tokens[:, t : t + 1], cache)  # finished rows feed pad: harmless, masked
            logits = logits[:, -1]
        return Rollout(questions, tokens.view(Q, G, T), mask.view(Q, G, T))

    def log_softmax(self, rollout: Rollout) -> torch.Tensor:
        return self.completion_log_softmax(rollout.questions, rollout.tokens)  # (Q, G, T, V)

    @torch.no_grad()
    def answer_log_probs(self, questions: torch.Tensor) -> torch.Tensor:
        """log pi(answer + <eos> | prompt) for each correct answer: (Q, A), -inf where a question has fewer."""
        questions = questions.to(self.device)
        answers, mask = self.answer_ids[questions], self.answer_mask[questions]  # (Q, A, L)
        logp = self.completion_log_softmax(questions, answers)                   # (Q, A, L, V)
        token_logp = logp.gather(-1, answers[..., None]).squeeze(-1)             # (Q, A, L)
        seq_logp = torch.where(mask, token_logp, 0.0).sum(-1)                    # (Q, A)
        return seq_logp.masked_fill(~mask.any(-1), float("-inf"))

    @torch.no_grad()
    def exact_pos(self, questions: torch.Tensor) -> torch.Tensor:
        """p_pi(q) = sum over the correct answers of pi(answer | q): (Q,)."""
        return self.answer_log_probs(questions).logsumexp(-1).exp()

    def reference_loss(self, questions: torch.Tensor, answers: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of labelled completions (B, L) over their real tokens (answer digits + <eos>)."""
        answers, mask = answers.to(self.device), mask.to(self.device)
        logp = self.completion_log_softmax(questions, answers[:, None])[:, 0]  # (B, L, V)
        token_logp = logp.gather(-1, answers[..., None]).squeeze(-1)           # (B, L)
        return -(token_logp * mask).sum() / mask.sum()

    # ---- files -----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with _quiet_transformers():
            self.model.save_pretrained(directory)  # safetensors: the default, and the only format in transformers 5
        self.task.tokenizer.save_pretrained(directory)

    @classmethod
    def load(cls, directory: str | Path, task: ModArithTask,
             device: str | torch.device = "auto") -> "TransformerPolicy":
        """Load a local HF causal-LM checkpoint (safetensors only); InputError naming the path if missing or corrupt."""
        return cls(task, _load_model(Path(directory), task), device)


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:limit]


def _load_model(directory: Path, task: ModArithTask) -> "PreTrainedModel":
    from transformers import AutoModelForCausalLM

    if not (directory / "config.json").is_file():
        raise InputError(f"missing checkpoint: {directory / 'config.json'}")
    if not any(directory.glob("*.safetensors")):
        raise InputError(f"missing checkpoint weights: no *.safetensors file in {directory}")
    try:
        with _quiet_transformers():
            model, info = AutoModelForCausalLM.from_pretrained(
                directory, use_safetensors=True, output_loading_info=True)
    except Exception as exc:  # transformers/safetensors raise OSError, SafetensorError, RuntimeError, ValueError...
        raise InputError(f"corrupt checkpoint in {directory}: {_one_line(exc)}") from None
    if info.get("missing_keys"):  # transformers would silently initialise them at random
        raise InputError(f"corrupt checkpoint in {directory}: missing weights {sorted(info['missing_keys'])[:3]}")
    n_logits = model.get_output_embeddings().weight.shape[0]
    if n_logits < task.vocab_size:
        raise InputError(f"checkpoint in {directory} has a vocabulary of {n_logits} tokens, "
                         f"fewer than the task's {task.vocab_size}")
    _check_tokenizer(directory, task)
    return model.float()  # fp32 master weights even from a bf16 checkpoint; autocast does the bf16


def _check_tokenizer(directory: Path, task: ModArithTask) -> None:
    """A checkpoint saved with a tokenizer must agree with the task's ids, or rewards would read the wrong digits."""
    if not (directory / "tokenizer.json").is_file():
        return
    from transformers import AutoTokenizer

    try:
        saved = AutoTokenizer.from_pretrained(directory)
    except Exception as exc:
        raise InputError(f"corrupt tokenizer in {directory}: {_one_line(exc)}") from None
    if saved.get_vocab() != task.tokenizer.get_vocab():
        raise InputError(f"tokenizer in {directory} does not match the task's tokenizer")


def _draw(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row from softmax(logits) at temperature 1, on the generator's device: (B,)."""
    probs = logits.float().softmax(-1)
    if probs.device != generator.device:  # a CPU generator drives CUDA sampling too, reproducibly
        probs = probs.to(generator.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def train_reference(task: ModArithTask, model_cfg: ModelConfig, ref_cfg: ReferenceTrainingConfig, seed: int,
                    device: str | torch.device = "auto") -> TransformerPolicy:
    """pi_ref: a model trained from scratch with AdamW on the task's noisy labels (all splits)."""
    policy = TransformerPolicy.from_config(task, model_cfg, seed=seed, device=device)
    policy.train()
    data_rng = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=ref_cfg.lr, weight_decay=ref_cfg.weight_decay)
    progress = tqdm(range(ref_cfg.steps), desc="pi_ref", file=sys.stderr, mininterval=1.0)
    for step in progress:
        loss = policy.reference_loss(*task.reference_batch(ref_cfg.batch_size, data_rng))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == ref_cfg.steps - 1:
            progress.set_postfix(loss=f"{loss.item():.3f}")
    policy.eval()
    return policy


@torch.no_grad()
def mc_pos(policy: Policy, questions: torch.Tensor, n_samples: int, generator: torch.Generator,
           max_rows: int = 1 << 16) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Monte Carlo PoS: n_samples completions per question, rewarded: (pos (Q,), n_success (Q,), n) on the CPU.

    Works for any policy that holds its ``task``; the Wilson interval is computed from (n_success, n).
    """
    n_success = torch.zeros(len(questions), dtype=torch.long)
    chunk = max(1, max_rows // max(1, len(questions)))  # bounds memory: at most max_rows completions at once
    for start in range(0, n_samples, chunk):
        rollout = policy.sample(questions, min(chunk, n_samples - start), generator)
        n_success += policy.task.reward(rollout).sum(-1).long().cpu()
    return n_success / n_samples, n_success, n_samples
