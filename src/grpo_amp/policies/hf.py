"""Any local Hugging Face causal LM answering a FileTask: prompts of any length, PoS by Monte Carlo only.

    model, tok = load_causal_lm(cfg.policy.checkpoint)
    task = FileTask.from_config(cfg.task, tok)
    policy = HFPolicy(task, model, temperature=cfg.policy.temperature)
    pos, lo, hi = pos.pos_mc(policy, task, questions, n_samples=cfg.policy.mc_samples, generator=g)

pi is the *sampling* distribution, softmax(logits / temperature): ``sample`` draws from it and
``log_softmax`` returns its log-probabilities (as TRL does), so C1 and PoS are about the same pi. At
temperature != 1 that pi is not the saved model's own distribution: ``temperature_note`` says so.
Prompts are left-padded; positions count real tokens only, so padding changes nothing.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from grpo_amp.policies.base import Policy
from grpo_amp.grpo.rollout import Rollout


def temperature_note(temperature: float) -> str | None:
    """The line outputs carry when sampling is not at temperature 1 (None at 1)."""
    if float(temperature) == 1.0:
        return None
    return (f"sampling temperature {temperature:g} != 1: PoS and training use pi^(1/{temperature:g}), the tempered "
            "policy, not the saved model's own distribution (the theory's pi is the sampling distribution)")


class HFPolicy(Policy):
    def __init__(self, task, model, temperature: float = 1.0, device: str | torch.device = "cpu"):
        super().__init__()
        self.task, self.model, self.temperature = task, model, float(temperature)
        self._cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.to(device)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _prompts(self, questions: torch.Tensor, repeats: int):
        """Left-padded prompt ids, attention mask and positions, each row repeated: (Q*R, P)."""
        rows = [self.task.prompt_token_ids[int(q)] for q in questions.tolist()]
        P = max(len(r) for r in rows)
        ids = torch.full((len(rows), P), self.task.pad_id, dtype=torch.long)
        att = torch.zeros((len(rows), P), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, P - len(r):], att[i, P - len(r):] = torch.tensor(r), 1
        ids, att = ids.repeat_interleave(repeats, 0).to(self.device), att.repeat_interleave(repeats, 0).to(self.device)
        return ids, att, (att.cumsum(-1) - 1).clamp(min=0)

    @torch.no_grad()
    def sample(self, questions: torch.Tensor, group_size: int, generator: torch.Generator) -> Rollout:
        Q, G, T = len(questions), group_size, self.task.max_new_tokens
        ids, att, pos = self._prompts(questions, G)
        out = self.model(input_ids=ids, attention_mask=att, position_ids=pos, use_cache=True)
        logits, cache, last = out.logits[:, -1], out[self._cache_kw], pos[:, -1]
        tokens = torch.full((Q * G, T), self.task.pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros((Q * G, T), dtype=torch.bool, device=self.device)
        done = torch.zeros(Q * G, dtype=torch.bool, device=self.device)
        for t in range(T):
            probs = (logits.float() / self.temperature).softmax(-1).to(generator.device)
            drawn = torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(self.device)  # (Q*G,)
            mask[:, t] = ~done
            tokens[:, t] = torch.where(done, self.task.pad_id, drawn)
            done |= drawn == self.task.eos_id
            if t == T - 1 or bool(done.all()):
                break
            att = torch.cat([att, torch.ones_like(att[:, :1])], 1)
            last = last + 1
            out = self.model(input_ids=tokens[:, t:t + 1], attention_mask=att, position_ids=last[:, None],
                             use_cache=True, **{self._cache_kw: cache})
            logits, cache = out.logits[:, -1], out[self._cache_kw]
        return Rollout(questions, tokens.view(Q, G, T), mask.view(Q, G, T))

    def log_softmax(self, rollout: Rollout) -> torch.Tensor:
        """log pi(. | prompt, o_<t) of the tempered policy at every completion position: (Q, G, T, V)."""
        Q, G, T = rollout.tokens.shape
        ids, att, _ = self._prompts(rollout.questions, G)
        P = ids.shape[1]
        full = torch.cat([ids, rollout.tokens.to(self.device).view(Q * G, T)], 1)
        att = torch.cat([att, torch.ones((Q * G, T), dtype=att.dtype, device=self.device)], 1)
        pos = (att.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(input_ids=full, attention_mask=att, position_ids=pos).logits[:, P - 1:-1]
        return (logits.float() / self.temperature).log_softmax(-1).view(Q, G, T, -1)

    def answer_log_probs(self, questions: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("a file task's answers are open-ended: PoS is Monte Carlo (policy.pos_method=mc)")

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)  # safetensors
        self.task.tokenizer.save_pretrained(directory)

    @classmethod
    def load(cls, directory: str | Path, task, device: str = "cpu", temperature: float = 1.0) -> "HFPolicy":
        from grpo_amp.policies.lm.checkpoint import load_causal_lm

        model, _ = load_causal_lm(directory, device=device)
        return cls(task, model, temperature, device)
