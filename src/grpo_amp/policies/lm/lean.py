"""The lean CPU backend: a plain ``LlamaForCausalLM``'s forward for the policy's one access pattern.

The same maths as transformers' Llama (RMSNorm, RoPE, causal attention, SwiGLU, LM head), read
from the model's own parameters at every call so gradients reach them as usual; outputs agree
with ``model(input_ids=...)`` to float rounding. What it saves on a CPU, where a model this small
is bound by the number and the memory layout of its ops rather than by its FLOPs:

- a prompt runs once per question (:meth:`LeanLlama.prompt`) and its K continuations attend to its
  keys and values without copying them K times, teacher-forced (``extend``) or while sampling
  (``decode``, whose cache grows by appending);
- q, k, v come from one matmul and go to a head-major layout in one copy; the RMSNorm gains and
  the attention scale are folded into the projection weights once per prompt pass (``weights``);
  residual adds ride on ``addmm``; every elementwise op sees contiguous tensors;
- the LM head runs only where logits are used;
- batched matmuls, not SDPA: its CPU kernel costs more than the maths for 5 x 5 scores.

Layouts are head first, (nh, Q, ..., hs), so attention batches over (head, prompt); nh heads of
hs dims each, as in nanoGPT. A model that is not a plain Llama (GQA, biases, scaled RoPE, dropout)
goes through :class:`~grpo_amp.policies.lm.hf.HFBackend`: see :meth:`LeanLlama.supports`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from grpo_amp.policies.lm.backend import Backend

# Continuations of one prompt attend densely within a block when a block's keys stay at most this many:
# a few batched matmuls of 24 x 29 beat hundreds of 3 x 8 ones, and the masked-out scores cost little
# next to the projections. Larger groups (Monte Carlo PoS: hundreds per question) are cut in blocks.
DENSE_KEYS = 64


def block_size(n_cont: int, length: int) -> int:
    """Continuations per block: the largest divisor of n_cont with n_cont_block * length <= DENSE_KEYS (at least 1)."""
    for n_block in range(max(1, min(n_cont, DENSE_KEYS // max(1, length))), 0, -1):
        if n_cont % n_block == 0:
            return n_block
    return 1


def _additive(ok: torch.Tensor) -> torch.Tensor:
    return torch.zeros(ok.shape, device=ok.device).masked_fill(~ok, float("-inf"))


class LeanLlama(Backend):
    """prompt / extend / decode for a plain Llama on the CPU (state: folded weights and the prompt's k, v)."""

    def __init__(self, model):
        super().__init__(model)
        cfg = model.config
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
        """RoPE tables for positions start..start+length-1, (length, hs) each; sin signed for the half swap."""
        key = (start, length, str(device))
        if key not in self._rope:
            inv_freq = self.model.model.rotary_emb.inv_freq.to(device=device, dtype=torch.float32)
            freqs = torch.arange(start, start + length, device=device, dtype=torch.float32)[:, None] * inv_freq
            emb = torch.cat((freqs, freqs), dim=-1)
            sin = emb.sin()
            sin[:, : inv_freq.shape[0]] *= -1  # rotate_half(x) * sin == roll(x, hs/2) * signed sin
            self._rope[key] = (emb.cos(), sin)
        return self._rope[key]

    def _extend_mask(self, n_block: int, new: int, prompt: int, device) -> torch.Tensor:
        """Additive mask (n_block*new, prompt + n_block*new): a row sees the prompt and its own continuation causally."""
        key = ("extend", n_block, new, prompt, str(device))
        if key not in self._masks:
            cont = torch.arange(n_block, device=device)
            pos = torch.arange(new, device=device).repeat(n_block)
            row_cont, col_cont = cont.repeat_interleave(new), cont.repeat_interleave(new)
            ok = (row_cont[:, None] == col_cont[None]) & (pos[None] <= pos[:, None])
            self._masks[key] = _additive(torch.cat([torch.ones(n_block * new, prompt, dtype=torch.bool,
                                                               device=device), ok], dim=1))
        return self._masks[key]

    def _decode_mask(self, n_block: int, length: int, prompt: int, device) -> torch.Tensor:
        """Additive mask (n_block, prompt + length*n_block): continuation j sees the prompt and its own tokens."""
        key = ("decode", n_block, length, prompt, str(device))
        if key not in self._masks:
            cont = torch.arange(n_block, device=device)
            own = cont[:, None] == cont.repeat(length)[None]  # columns (position, continuation)
            self._masks[key] = _additive(torch.cat([torch.ones(n_block, prompt, dtype=torch.bool,
                                                               device=device), own], dim=1))
        return self._masks[key]

    def weights(self) -> dict:
        """The projection weights with the RMSNorm gains and the attention scale folded in (with gradient)."""
        layers = []
        for layer in self.model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            g1, g2 = layer.input_layernorm.weight, layer.post_attention_layernorm.weight
            w_qkv = torch.cat([attn.q_proj.weight * attn.scaling, attn.k_proj.weight, attn.v_proj.weight]) * g1
            layers.append((w_qkv.t(), attn.o_proj.weight.t(), (mlp.gate_proj.weight * g2).t(),
                           (mlp.up_proj.weight * g2).t(), mlp.down_proj.weight.t()))
        head = (self.model.lm_head.weight * self.model.model.norm.weight).t()
        return {"layers": layers, "head": head, "embed": self.model.model.embed_tokens}

    # ---- pieces ------------------------------------------------------------------------------
    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), None, self.eps)

    def _qkv(self, x: torch.Tensor, w_qkv: torch.Tensor, batch: tuple, cos: torch.Tensor, sin: torch.Tensor):
        """Rotated q, k, v, (nh, *batch, S, hs) each, from tokens x (prod(batch)*S, C) in the order (*batch, S)."""
        nh, hs = self.n_head, self.head_dim
        n = len(batch) + 1  # the batch dims then S
        qkv = (self._norm(x) @ w_qkv).view(*batch, cos.shape[0], 3, nh, hs)
        qkv = qkv.permute(n, n + 1, *range(n), n + 2).contiguous()  # (3, nh, *batch, S, hs): one copy
        qk, v = qkv.split([2, 1])
        qk = torch.addcmul(qk * cos, qk.roll(hs // 2, dims=-1), sin)  # RoPE; cos, sin broadcast as (S, hs)
        q, k = qk.unbind(0)
        return q, k, v.squeeze(0)

    def _out_mlp(self, x: torch.Tensor, y: torch.Tensor, layer_w) -> torch.Tensor:
        """Residual attention output then the residual SwiGLU MLP; y (N, nh*hs) in x's row order."""
        _, w_o, w_gate, w_up, w_down = layer_w
        x = torch.addmm(x, y, w_o)
        h = self._norm(x)
        return torch.addmm(x, F.silu(h @ w_gate) * (h @ w_up), w_down)

    def _embed(self, ids: torch.Tensor, w: dict) -> torch.Tensor:
        return F.embedding(ids.reshape(-1), w["embed"].weight, w["embed"].padding_idx)

    def _logits(self, x: torch.Tensor, w: dict) -> torch.Tensor:
        return self._norm(x) @ w["head"]

    # ---- the passes --------------------------------------------------------------------------
    def prompt(self, prompt_ids: torch.Tensor):
        """Run (Q, P) prompts: last-position logits (Q, V), and state {weights, per layer (k, v) (nh, Q, P, hs)}."""
        w = self.weights()
        Q, P = prompt_ids.shape
        nh, hs = self.n_head, self.head_dim
        x = self._embed(prompt_ids, w)  # (Q*P, C)
        cos, sin = self._cos_sin(0, P, x.device)
        mask = self._extend_mask(1, P, 0, x.device)  # causal (P, P)
        kv = []
        for layer_w in w["layers"]:
            q, k, v = self._qkv(x, layer_w[0], (Q,), cos, sin)  # (nh, Q, P, hs)
            att = torch.baddbmm(mask, q.view(nh * Q, P, hs), k.view(nh * Q, P, hs).transpose(1, 2)).softmax(-1)
            y = torch.bmm(att, v.view(nh * Q, P, hs)).view(nh, Q * P, hs).transpose(0, 1).reshape(Q * P, nh * hs)
            x = self._out_mlp(x, y, layer_w)
            kv.append((k, v))
        last = x.view(Q, P, -1)[:, -1]
        return self._logits(last, w), {"weights": w, "kv": kv}

    def extend(self, state, tokens: torch.Tensor, n_block: int | None = None) -> torch.Tensor:
        """Teacher-force K continuations of S tokens after each of Q prompts: logits (Q, K, S, V).

        Blocks of n_block continuations attend densely to their prompt and to their own tokens,
        keys in the order (prompt, continuation, position). A row's rounding depends on its slot in
        its block: n_block = G lays out c groups of G (K = c*G) as c calls with K = G would, bit for bit.
        """
        return self._extend(state, tokens, n_block, None)

    def branch(self, state, tokens: torch.Tensor):
        """One more token (Q, K) after each prompt, each continuation then a prompt of its own: logits (Q, K, V)
        and the state of the Q*K longer prompts (row q*K + k), with gradient. Walking a tree of outputs level by
        level (grpo.lm_rungs.AnswerSpace) runs each shared prefix once instead of once per leaf."""
        new_kv: list = []
        logits = self._extend(state, tokens[..., None], None, new_kv)[:, :, 0]    # (Q, K, V)
        Q, K = tokens.shape
        kv = []
        for (k_prompt, v_prompt), (k_new, v_new) in zip(state["kv"], new_kv):  # (nh, Q, P, hs), (nh, Q, K, 1, hs)
            nh, _, P, hs = k_prompt.shape
            kv.append(tuple(torch.cat([old[:, :, None].expand(nh, Q, K, P, hs), new], dim=3).view(nh, Q * K, P + 1, hs)
                            for old, new in ((k_prompt, k_new), (v_prompt, v_new))))
        return logits, {"weights": state["weights"], "kv": kv}

    def _extend(self, state, tokens: torch.Tensor, n_block: int | None, new_kv: list | None) -> torch.Tensor:
        """``extend``; with ``new_kv`` a list, each layer's rotated k and v of the new tokens, (nh, Q, K, S, hs),
        are appended to it (``branch``)."""
        w, prompt_kv = state["weights"], state["kv"]
        Q, K, S = tokens.shape
        nh, hs = self.n_head, self.head_dim
        P = prompt_kv[0][0].shape[2]
        n_block = n_block or block_size(K, S)  # continuations per block
        n_blocks = K // n_block
        B = nh * Q * n_blocks  # attention batch: (head, prompt, block)
        x = self._embed(tokens, w)  # (Q*K*S, C)
        cos, sin = self._cos_sin(P, S, x.device)
        mask = self._extend_mask(n_block, S, P, x.device)
        for layer_w, (k_prompt, v_prompt) in zip(w["layers"], prompt_kv):  # k_prompt, v_prompt: (nh, Q, P, hs)
            q, k, v = self._qkv(x, layer_w[0], (Q, K), cos, sin)  # (nh, Q, K, S, hs)
            if new_kv is not None:
                new_kv.append((k, v))
            k = torch.cat([k_prompt[:, :, None].expand(nh, Q, n_blocks, P, hs),
                           k.view(nh, Q, n_blocks, n_block * S, hs)], dim=3)  # (nh, Q, n_blocks, P + n_block*S, hs)
            v = torch.cat([v_prompt[:, :, None].expand(nh, Q, n_blocks, P, hs),
                           v.view(nh, Q, n_blocks, n_block * S, hs)], dim=3)
            k, v = k.view(B, -1, hs), v.view(B, -1, hs)
            att = torch.baddbmm(mask, q.reshape(B, n_block * S, hs), k.transpose(1, 2)).softmax(-1)
            y = torch.bmm(att, v).view(nh, Q * K * S, hs).transpose(0, 1).reshape(Q * K * S, nh * hs)
            x = self._out_mlp(x, y, layer_w)
        return self._logits(x, w).view(Q, K, S, -1)

    def decode(self, state, tokens: torch.Tensor, cache, max_len: int, n_block: int | None = None):
        """Feed one more token (Q, K) to each continuation (no gradient): logits (Q, K, V) and the cache.

        max_len fixes the block size (or n_block, as in ``extend``). Keys and values stay in the order (prompt, position,
        continuation), so each step appends n_block rows per block instead of rebuilding them.
        """
        w, prompt_kv = state["weights"], state["kv"]
        Q, K = tokens.shape
        nh, hs = self.n_head, self.head_dim
        P = prompt_kv[0][0].shape[2]
        if cache is None:
            n_block = n_block or block_size(K, max_len)
            B = nh * Q * (K // n_block)
            cache = {"t": 0, "n_block": n_block,
                     "kv": [(k_prompt[:, :, None].expand(nh, Q, K // n_block, P, hs).reshape(B, P, hs),
                             v_prompt[:, :, None].expand(nh, Q, K // n_block, P, hs).reshape(B, P, hs))
                            for k_prompt, v_prompt in prompt_kv]}
        t, n_block = cache["t"], cache["n_block"]
        x = self._embed(tokens, w)  # (Q*K, C)
        cos, sin = self._cos_sin(P + t, 1, x.device)
        mask = self._decode_mask(n_block, t + 1, P, x.device)
        kv = []
        for layer_w, (k_past, v_past) in zip(w["layers"], cache["kv"]):  # (B, P + n_block*t, hs)
            q, k, v = self._qkv(x, layer_w[0], (Q, K), cos, sin)  # (nh, Q, K, 1, hs)
            B = k_past.shape[0]
            k = torch.cat([k_past, k.view(B, n_block, hs)], dim=1)  # (B, P + n_block*(t+1), hs)
            v = torch.cat([v_past, v.view(B, n_block, hs)], dim=1)
            kv.append((k, v))
            att = torch.baddbmm(mask, q.view(B, n_block, hs), k.transpose(1, 2)).softmax(-1)
            y = torch.bmm(att, v).view(nh, Q * K, hs).transpose(0, 1).reshape(Q * K, nh * hs)
            x = self._out_mlp(x, y, layer_w)
        return self._logits(x, w).view(Q, K, -1), {"t": t + 1, "n_block": n_block, "kv": kv}
