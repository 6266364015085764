"""A task read from a file: JSON lines or parquet (``datasets``), a prompt field, an answer field, a verifier.

    task = FileTask.from_config(cfg.task, tokenizer)     # cfg.task.path = "" -> the shipped arith.jsonl
    task.questions                                        # question, split, prompt, answers
    rewards = task.reward(rollout)                        # (Q, G): the verifier on the decoded completions

Verifiers (``task.verifier``): ``exact`` (equal after normalisation: case, spaces, a final period),
``numeric`` (the number after GSM8K's "####" in the reference, against the "####" number of the
completion or else its last number), ``math_verify`` (the math-verify package, only where installed).
Open-ended answers cannot be listed, so PoS is Monte Carlo (pos.pos_mc with a Wilson interval).
"""

from __future__ import annotations

import re
from fractions import Fraction
from importlib import resources
from pathlib import Path

import pandas as pd
import torch

from grpo_amp.io import InputError, one_line, read_csv, read_json, write_csv, write_json
from grpo_amp.grpo.rollout import Rollout
from grpo_amp.tasks.base import Task, load_tokenizer

COLUMNS = ["question", "split", "prompt", "answers"]
SPLITS = {"train": "train", "heldout": "heldout", "test": "heldout", "validation": "heldout", "eval": "heldout"}
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def shipped_file() -> Path:
    """The few dozen arithmetic questions of our own making that ship with the package."""
    return Path(str(resources.files("grpo_amp.tasks") / "data" / "arith.jsonl"))


# --------------------------------------------------------------------------- verifiers
def normalise(text: str) -> str:
    return " ".join(str(text).strip().lower().split()).rstrip(".")


def _number(text: str) -> Fraction | None:
    """The '#### x' number if there is one, else the last number in the text."""
    text = str(text)
    tail = text.split("####")[-1] if "####" in text else text
    found = _NUMBER.findall(tail)
    if not found:
        return None
    token = (found[0] if "####" in text else found[-1]).replace(",", "")
    try:
        return Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None


def exact_match(completion: str, answer: str) -> bool:
    return normalise(completion) == normalise(answer)


def numeric_match(completion: str, answer: str) -> bool:
    want = _number(answer)
    return want is not None and _number(completion) == want


def _math_verify():
    try:
        import math_verify
    except ImportError:
        raise InputError("task.verifier=math_verify needs the math-verify package (not installed here): "
                         "pip install math-verify, or use exact or numeric") from None

    def match(completion: str, answer: str) -> bool:
        return bool(math_verify.verify(math_verify.parse(answer), math_verify.parse(completion)))

    return match


def make_verifier(name: str):
    if name == "exact":
        return exact_match
    if name == "numeric":
        return numeric_match
    if name == "math_verify":
        return _math_verify()
    raise InputError(f"unknown task.verifier {name!r} (choose from exact, numeric, math_verify)")


# --------------------------------------------------------------------------- reading the file
def read_questions(path: str | Path, prompt_field: str, answer_field: str, split_field: str = "") -> pd.DataFrame:
    """The questions table from a .jsonl/.json or .parquet file; InputError (one line) naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"task.path: no such file {path}")
    kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"task.path: {path} is neither JSON lines (.jsonl) nor parquet (.parquet)")
    from datasets import load_dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    try:
        data = load_dataset(kind, data_files=str(path), split="train", keep_in_memory=True)
    except Exception as exc:  # pyarrow / json errors: the file is unreadable as that format
        raise InputError(f"task.path: cannot read {path} as {kind}: {one_line(exc, limit=160)}") from None
    for field, what in ((prompt_field, "task.prompt_field"), (answer_field, "task.answer_field"),
                        (split_field, "task.split_field")):
        if field and field not in data.column_names:
            raise InputError(f"{what}={field!r} is not a field of {path} (fields: {', '.join(data.column_names)})")
    if len(data) == 0:
        raise InputError(f"task.path: {path} has no rows")
    frame = data.to_pandas()
    splits = frame[split_field].astype(str).str.lower().map(SPLITS) if split_field else pd.Series("train", frame.index)
    if splits.isna().any():
        bad = frame[split_field][splits.isna()].iloc[0]
        raise InputError(f"task.split_field={split_field!r}: unknown split {bad!r} in {path} "
                         f"(use {', '.join(SPLITS)})")
    table = pd.DataFrame({"question": range(len(frame)), "split": splits.to_numpy(),
                          "prompt": frame[prompt_field].astype(str).to_numpy(),
                          "answers": frame[answer_field].astype(str).to_numpy()}, columns=COLUMNS)
    return table.set_index("question", drop=False)


class FileTask(Task):
    """Questions from a file and a text verifier; completions are decoded with the policy's tokenizer."""

    answers_listable = False  # open-ended answers: PoS is Monte Carlo only (pos.PosMeter)

    def __init__(self, questions: pd.DataFrame, tokenizer, verifier: str = "numeric", max_new_tokens: int = 16,
                 source: str = ""):
        self.questions = questions
        self.tokenizer = tokenizer
        self.verifier_name = verifier
        self.verify = make_verifier(verifier)
        self.max_new_tokens = int(max_new_tokens)
        self.source = source
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.prompt_token_ids = _encode_prompts(tokenizer, list(questions["prompt"]), source)  # ragged: TRL, HFPolicy pad

    @classmethod
    def from_config(cls, task_cfg, tokenizer) -> "FileTask":
        path = task_cfg.path or shipped_file()
        make_verifier(task_cfg.verifier)  # an unknown verifier fails before the file is read
        questions = read_questions(path, task_cfg.prompt_field, task_cfg.answer_field, task_cfg.split_field)
        return cls(questions, tokenizer, task_cfg.verifier, task_cfg.max_new_tokens, source=str(path))

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id

    def decode(self, rollout: Rollout) -> list[list[str]]:
        """The completions as text, (Q, G) nested lists, cut at the first <eos>."""
        tokens, mask = rollout.tokens.cpu(), rollout.mask.cpu()
        out = []
        for q in range(tokens.shape[0]):
            row = []
            for g in range(tokens.shape[1]):
                ids = tokens[q, g][mask[q, g]].tolist()
                if self.eos_id in ids:
                    ids = ids[: ids.index(self.eos_id)]
                row.append(self.tokenizer.decode(ids, skip_special_tokens=True))
            out.append(row)
        return out

    def score(self, completion: str, question: int) -> float:
        """r(q, o) of one decoded completion: 1.0 where the verifier accepts it, else 0.0."""
        return float(self.verify(completion, str(self.questions["answers"].iat[question])))

    def reward(self, rollout: Rollout) -> torch.Tensor:
        texts = self.decode(rollout)
        r = [[self.score(t, int(q)) for t in row] for q, row in zip(rollout.questions.tolist(), texts)]
        return torch.tensor(r, dtype=torch.float32, device=rollout.tokens.device)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_csv(self.questions[COLUMNS], directory / "questions.csv")
        write_json({"task": "file", "source": self.source, "verifier": self.verifier_name,
                    "max_new_tokens": self.max_new_tokens}, directory / "task.json")
        self.tokenizer.save_pretrained(directory)

    @classmethod
    def load(cls, directory: str | Path) -> "FileTask":
        """What ``save`` wrote (the reference directory): questions.csv, task.json and the tokenizer."""
        directory = Path(directory)
        meta_path = directory / "task.json"
        meta = read_json(meta_path)
        if meta.get("task") != "file" or "verifier" not in meta or "max_new_tokens" not in meta:
            raise InputError(f"corrupt task file {meta_path}: not a file task's")
        questions = read_csv(directory / "questions.csv", COLUMNS).set_index("question", drop=False)
        for col in ("prompt", "answers"):  # "7" alone reads back as the int 7
            questions[col] = questions[col].astype(str)
        if list(questions.index) != list(range(len(questions))):
            raise InputError(f"corrupt CSV file {directory / 'questions.csv'}: question ids must be 0..n-1 in order")
        return cls(questions, load_tokenizer(directory), meta["verifier"], meta["max_new_tokens"],
                   source=str(meta.get("source", "")))


def _encode_prompts(tokenizer, prompts: list[str], source: str) -> list[list[int]]:
    """Token ids of every prompt; InputError naming the first prompt the tokenizer cannot encode."""
    try:
        return tokenizer(prompts)["input_ids"]
    except Exception:  # e.g. a WordLevel vocabulary without [UNK] meeting a character it lacks
        for i, prompt in enumerate(prompts):
            try:
                tokenizer([prompt])
            except Exception as exc:
                raise InputError(f"task.path: the model's tokenizer cannot encode prompt {i} ({prompt!r}) of "
                                 f"{source or 'the task'}: {one_line(exc, limit=120)}") from None
        raise


def open_ended_task(task_cfg, tokenizer) -> FileTask:
    """task=file (questions from a file) or task=reasoning_gym (generated offline), for the model's tokenizer."""
    if task_cfg.name == "reasoning_gym":
        from grpo_amp.tasks.reasoning_gym_task import ReasoningGymTask  # a FileTask: imports this module

        return ReasoningGymTask.from_config(task_cfg, tokenizer)
    return FileTask.from_config(task_cfg, tokenizer)
