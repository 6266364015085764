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
On the CPU a plain Llama goes through ``_LeanLlama``, the same maths without HF's per-call overhead
and without the repeat (the completions attend to their prompt's keys in place); elsewhere, and for
other architectures, through the model's own forward.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from tqdm import tqdm

from grpo_amp.config import ConfigError, ModelConfig, ReferenceTrainingConfig
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


# --------------------------------------------------------------------------- the lean CPU forward
# Continuations of one prompt attend densely within a block when a block's keys stay at most this many:
# a few batched matmuls of 24 x 29 beat hundreds of 3 x 8 ones, and the masked-out scores cost little
# next to the projections. Larger groups (Monte Carlo PoS: hundreds per question) are cut in blocks.
_DENSE_KEYS = 64


class _LeanLlama:
    """The forward of a plain ``LlamaForCausalLM`` for this policy's one access pattern, without HF's overhead.

    The same maths as transformers' Llama (RMSNorm, RoPE, causal attention, SwiGLU, LM head), read
    from the model's own parameters at every call so gradients reach them as usual; outputs agree
    with ``model(input_ids=...)`` to float rounding. What it saves on a CPU, where a model this small
    is bound by the number and the memory layout of its ops rather than by its FLOPs:

    - a prompt runs once per question (:meth:`prompt`) and its K continuations attend to its keys
      and values without copying them K times, teacher-forced (:meth:`extend`) or while sampling
      (:meth:`decode`, whose cache grows by appending);
    - q, k, v come from one matmul and go to a head-major layout in one copy; the RMSNorm gains and
      the attention scale are folded into the projection weights once per call (:meth:`weights`);
      residual adds ride on ``addmm``; every elementwise op sees contiguous tensors;
    - the LM head runs only where logits are used.

    Used on the CPU only (on CUDA the HF forward under bf16 autocast is kept); a model that is not a
    plain Llama (GQA, biases, scaled RoPE, dropout) goes through HF's forward: see :meth:`supports`.
    Layouts: keys and values are (H, Q, ..., d), head first, so attention batches over (head, prompt).
    """

    def __init__(self, model: "PreTrainedModel"):
        cfg = model.config
        self.model = model
        self.n_head = cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        self._rope: dict = {}
        self._masks: dict = {}

    @staticmethod
    def supports(model) -> bool:
        from transformers import LlamaForCausalLM

        if type(model) is not LlamaForCausalLM:
            return False
        cfg = model.config
        rope = getattr(cfg, "rope_parameters", None) or {}
        return (cfg.hidden_act == "silu" and not cfg.attention_bias and not cfg.mlp_bias
                and cfg.num_key_value_heads == cfg.num_attention_heads and rope.get("rope_type", "default") == "default"
                and getattr(cfg, "pretraining_tp", 1) == 1 and not cfg.attention_dropout
                and model.model.rotary_emb.attention_scaling == 1.0)

    # ---- constants and weights ---------------------------------------------------------------
    def _cos_sin(self, start: int, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE tables for positions start..start+length-1, (length, d) each; sin signed for the half swap."""
        key = (start, length, str(device))
        if key not in self._rope:
            inv_freq = self.model.model.rotary_emb.inv_freq.to(device=device, dtype=torch.float32)
            freqs = torch.arange(start, start + length, device=device, dtype=torch.float32)[:, None] * inv_freq
            emb = torch.cat((freqs, freqs), dim=-1)
            sin = emb.sin()
            sin[:, : inv_freq.shape[0]] *= -1  # rotate_half(x) * sin == roll(x, d/2) * signed sin
            self._rope[key] = (emb.cos(), sin)
        return self._rope[key]

    def _block_mask(self, c: int, past: int, new: int, prompt: int, device) -> torch.Tensor:
        """Additive mask (c*new, prompt + c*(past+new)): each row sees the prompt and its own continuation causally."""
        key = (c, past, new, prompt, str(device))
        if key not in self._masks:
            cont = torch.arange(c, device=device)
            row_cont, row_pos = cont.repeat_interleave(new), torch.arange(new, device=device).repeat(c) + past
            col_cont, col_pos = cont.repeat_interleave(past + new), torch.arange(past + new, device=device).repeat(c)
            ok = (row_cont[:, None] == col_cont[None]) & (col_pos[None] <= row_pos[:, None])
            ok = torch.cat([torch.ones(c * new, prompt, dtype=torch.bool, device=device), ok], dim=1)
            self._masks[key] = torch.zeros(ok.shape, device=device).masked_fill(~ok, float("-inf"))
        return self._masks[key]

    def weights(self) -> dict:
        """The projection weights with the RMSNorm gains and the attention scale folded in (with gradient)."""
        layers = []
        for layer in self.model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            g1, g2 = layer.input_layernorm.weight, layer.post_attention_layernorm.weight
            qkv = torch.cat([attn.q_proj.weight * attn.scaling, attn.k_proj.weight, attn.v_proj.weight]) * g1
            layers.append((qkv.t(), attn.o_proj.weight.t(), (mlp.gate_proj.weight * g2).t(),
                           (mlp.up_proj.weight * g2).t(), mlp.down_proj.weight.t()))
        head = (self.model.lm_head.weight * self.model.model.norm.weight).t()
        return {"layers": layers, "head": head, "embed": self.model.model.embed_tokens}

    # ---- pieces ------------------------------------------------------------------------------
    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), None, self.eps)

    def _qkv(self, x: torch.Tensor, w_qkv: torch.Tensor, shape: tuple, cos: torch.Tensor, sin: torch.Tensor):
        """Rotated q, k and v in the layout (H, *shape, S, d) from tokens x (prod(shape)*S, D) in the order (*shape, S)."""
        H, d = self.n_head, self.head_dim
        n = len(shape) + 1  # the batch dims then S
        qkv = (self._norm(x) @ w_qkv).view(*shape, cos.shape[0], 3, H, d)
        qkv = qkv.permute(n, n + 1, *range(n), n + 2).contiguous()  # (3, H, *shape, S, d): one copy
        qk, v = qkv.split([2, 1])
        qk = torch.addcmul(qk * cos, qk.roll(d // 2, dims=-1), sin)  # RoPE; cos, sin broadcast as (S, d)
        q, k = qk.unbind(0)
        return q, k, v.squeeze(0)

    def _out_mlp(self, x: torch.Tensor, attn_out: torch.Tensor, w) -> torch.Tensor:
        """Residual attention output then the residual SwiGLU MLP; attn_out (N, H*d) in x's row order."""
        _, w_o, w_gate, w_up, w_down = w
        x = torch.addmm(x, attn_out, w_o)
        h = self._norm(x)
        return torch.addmm(x, F.silu(h @ w_gate) * (h @ w_up), w_down)

    def _embed(self, ids: torch.Tensor, w: dict) -> torch.Tensor:
        return F.embedding(ids.reshape(-1), w["embed"].weight, w["embed"].padding_idx)

    # ---- the passes --------------------------------------------------------------------------
    def prompt(self, w: dict, ids: torch.Tensor):
        """Run (B, P) prompts: last-position logits (B, V) and per layer (keys, values), (H, B, P, d) each."""
        B, P = ids.shape
        x = self._embed(ids, w)  # (B*P, D)
        H, d = self.n_head, self.head_dim
        cos, sin = self._cos_sin(0, P, x.device)
        mask = self._block_mask(1, 0, P, 0, x.device)  # causal (P, P)
        kv = []
        for layer_w in w["layers"]:
            q, k, v = self._qkv(x, layer_w[0], (B,), cos, sin)  # (H, B, P, d)
            # batched matmuls, not SDPA: its CPU kernel costs more than the maths for 5 x 5 scores
            scores = torch.baddbmm(mask, q.view(H * B, P, d), k.view(H * B, P, d).transpose(1, 2)).softmax(-1)
            out = torch.bmm(scores, v.view(H * B, P, d)).view(H, B * P, d).transpose(0, 1).reshape(B * P, H * d)
            x = self._out_mlp(x, out, layer_w)
            kv.append((k, v))
        last = x.view(B, P, -1)[:, -1]
        return self._norm(last) @ w["head"], kv

    def extend(self, w: dict, prompt_kv, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-force K continuations of S tokens after each of Q prompts: logits (Q, K, S, V).

        prompt_kv: from :meth:`prompt`; tokens: (Q, K, S). Blocks of c continuations attend densely to
        their prompt and to their own tokens, keys in the order (prompt, continuation, position).
        """
        Q, K, S = tokens.shape
        H, d = self.n_head, self.head_dim
        P = prompt_kv[0][0].shape[2]
        c = _block_size(K, S)  # continuations per block
        nb = K // c
        x = self._embed(tokens, w)  # (Q*K*S, D)
        cos, sin = self._cos_sin(P, S, x.device)
        mask = self._block_mask(c, 0, S, P, x.device)
        for i, layer_w in enumerate(w["layers"]):
            q, k, v = self._qkv(x, layer_w[0], (Q, K), cos, sin)  # (H, Q, K, S, d)
            kp, vp = prompt_kv[i]  # (H, Q, P, d)
            keys = torch.cat([kp[:, :, None].expand(H, Q, nb, P, d), k.view(H, Q, nb, c * S, d)], dim=3)
            values = torch.cat([vp[:, :, None].expand(H, Q, nb, P, d), v.view(H, Q, nb, c * S, d)], dim=3)
            keys, values = keys.view(H * Q * nb, -1, d), values.view(H * Q * nb, -1, d)
            scores = torch.baddbmm(mask, q.reshape(H * Q * nb, c * S, d), keys.transpose(1, 2)).softmax(-1)
            out = torch.bmm(scores, values).view(H, Q * K * S, d).transpose(0, 1).reshape(Q * K * S, H * d)
            x = self._out_mlp(x, out, layer_w)
        return (self._norm(x) @ w["head"]).view(Q, K, S, -1)

    def decode(self, w: dict, prompt_kv, tokens: torch.Tensor, state: dict | None, max_len: int):
        """Feed one more token to each of K continuations of Q prompts (no gradient): logits (Q, K, V) and the state.

        state: None at the first token, then what the previous call returned; max_len: the most tokens
        a continuation will be fed (fixes the block size). Keys and values stay in the order (prompt,
        position, continuation), so each step appends c rows per block instead of rebuilding them.
        """
        Q, K = tokens.shape
        H, d = self.n_head, self.head_dim
        P = prompt_kv[0][0].shape[2]
        if state is None:
            c = _block_size(K, max_len)
            state = {"t": 0, "c": c, "kv": [(kp[:, :, None].expand(H, Q, K // c, P, d).reshape(-1, P, d),
                                            vp[:, :, None].expand(H, Q, K // c, P, d).reshape(-1, P, d))
                                           for kp, vp in prompt_kv]}
        t, c = state["t"], state["c"]
        x = self._embed(tokens, w)  # (Q*K, D)
        cos, sin = self._cos_sin(P + t, 1, x.device)
        mask = self._decode_mask(c, t + 1, P, x.device)
        cache = []
        for i, layer_w in enumerate(w["layers"]):
            q, k, v = self._qkv(x, layer_w[0], (Q, K), cos, sin)  # (H, Q, K, 1, d)
            keys, values = state["kv"][i]                          # (H*Q*nb, P + c*t, d)
            keys = torch.cat([keys, k.view(keys.shape[0], c, d)], dim=1)
            values = torch.cat([values, v.view(values.shape[0], c, d)], dim=1)
            cache.append((keys, values))
            scores = torch.baddbmm(mask, q.view(keys.shape[0], c, d), keys.transpose(1, 2)).softmax(-1)
            out = torch.bmm(scores, values).view(H, Q * K, d).transpose(0, 1).reshape(Q * K, H * d)
            x = self._out_mlp(x, out, layer_w)
        return (self._norm(x) @ w["head"]).view(Q, K, -1), {"t": t + 1, "c": c, "kv": cache}

    def _decode_mask(self, c: int, length: int, prompt: int, device) -> torch.Tensor:
        """Additive mask (c, prompt + length*c): continuation j sees the prompt and its own `length` tokens."""
        key = ("decode", c, length, prompt, str(device))
        if key not in self._masks:
            cont = torch.arange(c, device=device)
            own = (cont[:, None] == cont.repeat(length)[None])  # columns (position, continuation)
            ok = torch.cat([torch.ones(c, prompt, dtype=torch.bool, device=device), own], dim=1)
            self._masks[key] = torch.zeros(ok.shape, device=device).masked_fill(~ok, float("-inf"))
        return self._masks[key]


def _block_size(n_cont: int, length: int) -> int:
    """The largest divisor c of n_cont with c * length <= _DENSE_KEYS (at least 1)."""
    for c in range(max(1, min(n_cont, _DENSE_KEYS // max(1, length))), 0, -1):
        if n_cont % c == 0:
            return c
    return 1


class TransformerPolicy(Policy):
    """pi(o|q) = a causal LM's probability of the completion tokens o (digits then <eos>) after q's prompt."""

    family = "transformer"

    def __init__(self, task: ModArithTask, model: "PreTrainedModel", device: str | torch.device = "auto"):
        super().__init__()
        self.task = task
        self.model = model
        # transformers 5 renamed past_key_values to cache; read the name off the model's forward
        self._cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self._lean = _LeanLlama(model) if _LeanLlama.supports(model) else None  # used on the CPU
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

    def _lean_forward(self) -> "_LeanLlama | None":
        """The lean forward where it applies (a plain Llama on the CPU), else None: HF's forward."""
        return self._lean if self._lean is not None and self.device.type == "cpu" else None

    def _prompt_state(self, questions: torch.Tensor, repeats: int):
        """Run each prompt once: next-token logits (Q*R, V) and a KV cache repeated R times per question."""
        logits, cache = self._forward(self.prompt_ids[questions])  # (Q, P, V)
        return logits[:, -1].repeat_interleave(repeats, dim=0), _repeat_cache(cache, repeats)

    def completion_log_softmax(self, questions: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log pi(. | prompt, o_<t) at every completion position: (Q, K, T, V) fp32, with gradient."""
        questions = questions.to(self.device)
        Q, K, T = completions.shape
        lean = self._lean_forward()
        if lean is not None:
            weights = lean.weights()
            first, prompt_kv = lean.prompt(weights, self.prompt_ids[questions])  # (Q, V): each prompt once
            logits = first[:, None, None].expand(Q, K, 1, first.shape[-1])
            if T > 1:
                rest = lean.extend(weights, prompt_kv, completions.to(self.device)[..., :-1])  # (Q, K, T-1, V)
                logits = torch.cat([logits, rest], dim=2)
            return logits.float().log_softmax(-1)
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
        lean = self._lean_forward()
        if lean is not None:
            weights = lean.weights()
            logits, prompt_kv = lean.prompt(weights, self.prompt_ids[questions])  # (Q, V): each prompt once
            logits, cache = logits.repeat_interleave(G, dim=0), None
        else:
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
            if lean is not None:
                logits, cache = lean.decode(weights, prompt_kv, tokens[:, t].view(Q, G), cache, T - 1)
                logits = logits.view(Q * G, -1)
            else:
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
                directory, use_safetensors=True, output_loading_info=True, local_files_only=True)
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
        saved = AutoTokenizer.from_pretrained(directory, local_files_only=True)
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
