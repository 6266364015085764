"""Modular arithmetic, the transformer's verifiable task: "a op b mod m", answered in digits.

Every prompt has the same width ("03+10=" for m = 11), so prompts batch without padding. An
output is an optional "+" (``plus_sign``), up to ``answer_digits`` digits, then <eos>; zero-padding
is allowed, so "7" and "07" (and with the sign "+7" and "+07") are all correct and most questions
have several correct outputs (C2's "inside the correct set" has something to look at). Each question carries its own label-noise rate, drawn once
from Beta(noise_a, noise_b): pi_ref is trained on answers that are wrong with that
probability, which spreads p_ref over (0, 1) by construction.

    task = ModArithTask.generate(TaskConfig(name="modarith", modulus=11, n_train=64, n_heldout=16))
    task.prompt_ids            # (n, P) long, <bos> first
    task.answer_ids            # (n, A, L) long: every correct answer + <eos>, padded
    rewards = task.reward(rollout)   # (Q, G) float in {0, 1}
    task.save("results/default/reference/transformer")
    task = ModArithTask.load("results/default/reference/transformer")
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from grpo_amp.config import REASONING_GYM_FIELDS, ConfigError, TaskConfig
from grpo_amp.io import InputError, one_line, read_csv, read_json, write_csv, write_json
from grpo_amp.grpo.rollout import Rollout
from grpo_amp.tasks.base import Task, load_tokenizer

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
DIGITS = "0123456789"
OPS = "+*"
COLUMNS = ["question", "split", "prompt", "answers", "noise_rate"]
_PROMPT_RE = re.compile(r"^(\d+)([+*])(\d+)=$")


def build_tokenizer():
    """One token per character (digits, "+", "*", "=") plus <pad>, <bos>, <eos>; encoding prepends <bos>."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast  # imported here: transformers takes seconds to import

    vocab = {tok: i for i, tok in enumerate([PAD, BOS, EOS, *DIGITS, *OPS, "="])}
    core = Tokenizer(models.WordLevel(vocab))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    core.decoder = decoders.Fuse()  # "0", "7" -> "07", not "0 7"
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD)


def apply_op(a: int, op: str, b: int, modulus: int) -> int:
    return (a + b if op == "+" else a * b) % modulus


def answer_forms(value: int, answer_digits: int, plus_sign: bool = False) -> list[str]:
    """Every correct spelling of ``value``: itself, then zero-padded up to ``answer_digits`` digits; with
    ``plus_sign``, each of those again after a "+"."""
    digits = [str(value).zfill(k) for k in range(len(str(value)), answer_digits + 1)]
    return digits + ["+" + d for d in digits] if plus_sign else digits


def forms_of(cfg: TaskConfig, value: int) -> list[str]:
    return answer_forms(value, cfg.answer_digits, cfg.plus_sign)


def make_questions(cfg: TaskConfig) -> pd.DataFrame:
    """The questions table: all (a, b, op) shuffled with cfg.seed, split into train then heldout."""
    width = len(str(cfg.modulus - 1))
    pairs = [(a, op, b) for op in cfg.ops for a in range(cfg.modulus) for b in range(cfg.modulus)]
    n = cfg.n_train + cfg.n_heldout
    if n > len(pairs):
        raise ConfigError(f"task.n_train + task.n_heldout must be <= {len(pairs)} (the number of distinct "
                         f"questions for modulus {cfg.modulus}, ops {cfg.ops}); got {cfg.n_train} + {cfg.n_heldout}")
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(pairs))[:n]
    noise_rate = rng.beta(cfg.noise_a, cfg.noise_b, size=n)
    rows = []
    for qid, idx in enumerate(order):
        a, op, b = pairs[idx]
        rows.append({
            "question": qid,
            "split": "train" if qid < cfg.n_train else "heldout",
            "prompt": f"{a:0{width}d}{op}{b:0{width}d}=",
            "answers": "|".join(forms_of(cfg, apply_op(a, op, b, cfg.modulus))),
            "noise_rate": float(noise_rate[qid]),
        })
    return pd.DataFrame(rows, columns=COLUMNS).set_index("question", drop=False)


def _check_config(cfg: TaskConfig) -> None:
    if cfg.name != "modarith":
        raise ConfigError(f"task.name must be modarith for ModArithTask; got {cfg.name!r}")
    bad = [op for op in cfg.ops if op not in OPS]
    if not cfg.ops or bad or len(set(cfg.ops)) != len(cfg.ops):
        raise ConfigError(f"task.ops must be a non-empty subset of ['+', '*']; got {cfg.ops!r}")
    if cfg.answer_digits < len(str(cfg.modulus - 1)):
        raise ConfigError(f"task.answer_digits must be >= {len(str(cfg.modulus - 1))} (the digits of "
                         f"modulus - 1); got {cfg.answer_digits}")


class ModArithTask(Task):
    """"a op b mod m" with digit answers; ``questions`` holds question, split, prompt, answers, noise_rate."""

    def __init__(self, cfg: TaskConfig, questions: pd.DataFrame | None = None, tokenizer=None):
        _check_config(cfg)
        self.cfg = cfg
        self.questions = make_questions(cfg) if questions is None else questions
        self.tokenizer = build_tokenizer() if tokenizer is None else tokenizer
        self.max_new_tokens = int(cfg.plus_sign) + cfg.answer_digits + 1  # T: ["+"] digits <eos>
        self._build_tensors()

    @classmethod
    def generate(cls, cfg: TaskConfig) -> "ModArithTask":
        """A fresh task from its config (the same as ``ModArithTask(cfg)``; named like TabularTask.generate)."""
        return cls(cfg)

    # ---- token ids -------------------------------------------------------------------------
    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def encode_answer(self, answer: str) -> list[int]:
        return self.tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.eos_id]

    def _build_tensors(self) -> None:
        cfg, tok = self.cfg, self.tokenizer
        if tok.pad_token_id is None or tok.eos_token_id is None:
            raise ValueError("the tokenizer needs a pad and an eos token")
        prompts = tok(list(self.questions["prompt"]))["input_ids"]
        if len({len(p) for p in prompts}) != 1:  # the KV-cache sharing relies on unpadded prompts
            raise ValueError("the tokenizer must encode every prompt to the same number of tokens")
        self.prompt_ids = torch.tensor(prompts, dtype=torch.long)  # (n, P)
        first_answers = [int(str(a).split("|")[0]) for a in self.questions["answers"]]  # unsigned, unpadded
        self.values = torch.tensor(first_answers, dtype=torch.long)  # (n,): (a op b) mod m
        self.noise_rate = torch.tensor(self.questions["noise_rate"].to_numpy(), dtype=torch.float32)  # (n,)

        # every spelling of every residue, so reference data can draw right or wrong answers alike
        L, A = self.max_new_tokens, len(forms_of(cfg, 0))  # A: the most spellings a value has (0's)
        self.value_ids = torch.full((cfg.modulus, A, L), self.pad_id, dtype=torch.long)  # (m, A, L)
        self.value_lens = torch.zeros(cfg.modulus, A, dtype=torch.long)                  # (m, A); 0 = no such form
        for v in range(cfg.modulus):
            for k, form in enumerate(forms_of(cfg, v)):
                ids = self.encode_answer(form)
                if len(ids) != len(form) + 1:  # the verifier reads one character (digit or sign) per token
                    raise ValueError(f"the tokenizer must encode answers one token per digit; {form!r} -> {ids}")
                self.value_ids[v, k, : len(ids)] = torch.tensor(ids)
                self.value_lens[v, k] = len(ids)
        self.n_forms = (self.value_lens > 0).sum(-1)  # (m,)

        # the correct answers of each question: its value's spellings
        self.answer_ids = self.value_ids[self.values]    # (n, A, L)
        self.answer_lens = self.value_lens[self.values]  # (n, A)
        self.answer_mask = torch.arange(L) < self.answer_lens[..., None]  # (n, A, L)

        # token id -> digit value (-1: not a digit), for the vectorised verifier
        digit_ids = tok.convert_tokens_to_ids(list(DIGITS))
        self.digit_of = torch.full((max(self.vocab_size, max(digit_ids) + 1),), -1, dtype=torch.long)
        self.digit_of[torch.tensor(digit_ids)] = torch.arange(10)
        self.plus_id = tok.convert_tokens_to_ids("+") if cfg.plus_sign else None

    # ---- the verifier ----------------------------------------------------------------------
    def reward(self, rollout: Rollout) -> torch.Tensor:
        """1 where the completion is ["+"], 1..answer_digits digits, then <eos>, and equals (a op b) mod m
        (the "+" only where the task allows it: ``plus_sign``)."""
        tokens, mask = rollout.tokens, rollout.mask  # (Q, G, T)
        T = tokens.shape[-1]
        position = torch.arange(T, device=tokens.device)
        is_eos = (tokens == self.eos_id) & mask
        has_eos = is_eos.any(-1)                     # (Q, G)
        eos_at = is_eos.int().argmax(-1)             # (Q, G): position of the first <eos>
        signed = (tokens[..., 0] == self.plus_id) & mask[..., 0] if self.plus_id is not None \
            else torch.zeros_like(has_eos)           # (Q, G): a leading "+", skipped by the digits
        first_digit = signed.long()
        n_digits = eos_at - first_digit
        in_digits = (position >= first_digit[..., None]) & (position < eos_at[..., None])  # (Q, G, T)

        digit_of = self.digit_of.to(tokens.device)
        digits = digit_of[tokens.clamp(0, len(digit_of) - 1)]
        digits = torch.where(tokens < len(digit_of), digits, -1)  # ids beyond our vocab are not digits
        all_digits = ((digits >= 0) & mask | ~in_digits).all(-1)  # (Q, G)

        # the integer the digits spell: sum d_i 10^(eos_at-1-i) over the digit positions
        place = (eos_at[..., None] - 1 - position).clamp(min=0)
        value = (digits.clamp(min=0) * 10 ** place * in_digits).sum(-1)  # (Q, G)

        target = self.values.to(tokens.device)[rollout.questions][:, None]  # (Q, 1)
        ok = has_eos & (n_digits >= 1) & (n_digits <= self.cfg.answer_digits) & all_digits & (value == target)
        return ok.float()

    # ---- pi_ref's training data -------------------------------------------------------------
    def reference_batch(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Noisy labelled answers for pi_ref: (questions (B,), answer ids (B, L), mask (B, L)), on the CPU.

        Questions come from the train split only (issue 20): a held-out question never enters pi_ref's
        training data, so E3's held-out gain measures generalisation. Each is answered wrongly with its
        noise_rate, by a uniformly random other residue; the spelling is uniform over the value's
        forms (zero-padded, signed), so pi_ref spreads its mass inside the correct set rather than on one form.
        """
        m = self.cfg.modulus
        train = self.split_ids("train")
        questions = train[torch.randint(len(train), (batch_size,), generator=generator)]
        wrong = torch.rand(batch_size, generator=generator) < self.noise_rate[questions]
        shift = torch.randint(1, max(m, 2), (batch_size,), generator=generator)  # uniform over the m-1 others
        correct = self.values[questions]
        values = torch.where(wrong, (correct + shift) % m, correct)
        form = (torch.rand(batch_size, generator=generator) * self.n_forms[values]).long()
        answers = self.value_ids[values, form]                                       # (B, L)
        mask = torch.arange(answers.shape[1]) < self.value_lens[values, form][:, None]  # (B, L)
        return questions, answers, mask

    # ---- files -----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_csv(self.questions[COLUMNS], directory / "questions.csv")
        # reasoning_gym's fields are not this task's, and draw 0 and no sign are the plain task: left out, so
        # task.json keeps its bytes (a draw k >= 1 records it beside the seed it moved: config.draw_seed)
        own = {k: v for k, v in dataclasses.asdict(self.cfg).items()
               if k not in REASONING_GYM_FIELDS and not (k in ("draw", "plus_sign") and not v)}
        write_json({"task": own, "prompt_length": self.prompt_ids.shape[1],
                    "max_new_tokens": self.max_new_tokens}, directory / "task.json")
        self.tokenizer.save_pretrained(directory)

    @classmethod
    def load(cls, directory: str | Path) -> "ModArithTask":
        """Read what ``save`` wrote; a missing or inconsistent file raises InputError naming it."""
        directory = Path(directory)
        meta_path, table_path = directory / "task.json", directory / "questions.csv"
        meta = read_json(meta_path)
        try:
            fields = {f.name for f in dataclasses.fields(TaskConfig)}
            cfg = TaskConfig(**{k: v for k, v in meta["task"].items() if k in fields})
            _check_config(cfg)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"corrupt task file {meta_path}: {one_line(exc, limit=None)}") from None
        questions = read_csv(table_path, COLUMNS).set_index("question", drop=False)
        questions["answers"] = questions["answers"].astype(str)  # "7" alone reads back as the int 7
        _check_questions(questions, cfg, table_path)
        try:
            return cls(cfg, questions, _load_tokenizer(directory))
        except ValueError as exc:  # a tokenizer that does not fit the task
            raise InputError(f"tokenizer in {directory}: {exc}") from None


def _load_tokenizer(directory: Path):
    if not (directory / "tokenizer.json").is_file():
        raise InputError(f"missing input file: {directory / 'tokenizer.json'}")
    return load_tokenizer(directory)


def _check_questions(questions: pd.DataFrame, cfg: TaskConfig, path: Path) -> None:
    """Every prompt parses and its answers are exactly the correct spellings of a op b mod m."""
    if list(questions.index) != list(range(len(questions))):
        raise InputError(f"corrupt CSV file {path}: question ids must be 0..n-1 in order")
    for q, prompt, answers, split, noise in questions[["prompt", "answers", "split", "noise_rate"]].itertuples():
        match = _PROMPT_RE.match(str(prompt))
        ok = match is not None and split in ("train", "heldout") and 0 <= noise <= 1
        if ok:
            a, op, b = int(match[1]), match[2], int(match[3])
            ok = str(answers) == "|".join(forms_of(cfg, apply_op(a, op, b, cfg.modulus)))
        if not ok:
            raise InputError(f"corrupt CSV file {path}: question {q} ({prompt!r}, {answers!r}) is not a "
                             f"modarith question for modulus {cfg.modulus}")
