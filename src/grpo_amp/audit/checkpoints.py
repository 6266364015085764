"""A run's checkpoints: found, put in step order and checked against the base model, from files only.

    points = find_points(base, ["/runs/out"])      # Point("base", 0, base), Point("step-00000010", 10, ...), ...
    check_point(point, base)                        # InputError (one line) naming what is wrong
    logged = trainer_log(point)                     # what TRL logged at that step (trainer_state.json)

Never unpickle: TRL's training_args.bin, optimizer.pt, scheduler.pt and rng_state.pth are pickles and are
never opened. The step comes from trainer_state.json (JSON) or the folder name; the architecture from
config.json; weights only from *.safetensors (a folder with pickled weights only is refused).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from grpo_amp.io import InputError, one_line

CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")  # TRL / HF Trainer: output_dir/checkpoint-<global_step>
PICKLED = ("pytorch_model.bin", "*.bin", "*.pt", "*.pth", "*.ckpt")  # weights we refuse to load
# config.json keys that fix the shape of the weights: a checkpoint must agree with the base on each
ARCHITECTURE_KEYS = ("model_type", "architectures", "vocab_size", "hidden_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "intermediate_size", "n_embd", "n_layer", "n_head")
TRAINER_LOG_KEYS = ("reward", "loss", "kl", "learning_rate", "completions/mean_length")


@dataclass(frozen=True)
class Point:
    """One measured point of the run: the base model (step 0, pi_ref) or a checkpoint at an optimiser step."""
    name: str   # "base" or "step-<8 digits>": names its pos file
    step: int
    path: Path


def point_name(step: int) -> str:
    return f"step-{step:08d}"


def _config(path: Path, what: str) -> dict:
    file = path / "config.json"
    if not file.is_file():
        raise InputError(f"{what}: missing {file} (not a Hugging Face model directory)")
    try:
        return json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what}: corrupt {file}: {one_line(exc)}") from None


def _step_of(path: Path) -> int:
    """global_step from trainer_state.json, else the checkpoint-<step> folder name; they must agree."""
    m = CHECKPOINT_DIR.match(path.name)
    state = path / "trainer_state.json"
    if state.is_file():
        try:
            step = int(json.loads(state.read_text())["global_step"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"audit.checkpoints: corrupt {state}: {one_line(exc)}") from None
        if m and int(m[1]) != step:
            raise InputError(f"audit.checkpoints: {path} is named step {m[1]} but its trainer_state.json says "
                             f"global_step {step}")
        return step
    if m:
        return int(m[1])
    raise InputError(f"audit.checkpoints: cannot tell the step of {path} (neither a checkpoint-<step> folder "
                     "nor a trainer_state.json)")


def find_points(base: str | os.PathLike, checkpoints: list[str]) -> list[Point]:
    """The base (step 0) and the checkpoints in step order; InputError (one line) for a bad list."""
    entries = [Path(os.path.expanduser(str(c))) for c in checkpoints]
    if not entries:
        raise InputError("audit.checkpoints is empty: give a TRL output_dir or a list of checkpoint folders")
    for e in entries:
        if not e.exists():
            raise InputError(f"audit.checkpoints: no such directory {e}")
        if not e.is_dir():
            raise InputError(f"audit.checkpoints: {e} is not a directory")
    if len(entries) == 1 and not (entries[0] / "config.json").is_file():  # an output_dir: its checkpoint-* folders
        out = entries[0]
        found = [p for p in out.iterdir() if p.is_dir() and CHECKPOINT_DIR.match(p.name)]
        if not found:
            raise InputError(f"audit.checkpoints: {out} has no checkpoint-<step> folders (a TRL output_dir saved "
                             "with save_steps, or list the checkpoint folders)")
        paths = sorted(found, key=lambda p: int(CHECKPOINT_DIR.match(p.name)[1]))
    else:
        paths = entries  # an explicit list: kept in the order given, which must be the step order
    points = [Point("base", 0, Path(os.path.expanduser(str(base))))]
    for p in paths:
        step = _step_of(p)
        if step <= points[-1].step:
            before = points[-1]
            raise InputError(f"audit.checkpoints: {p} (step {step}) comes after {before.path} (step {before.step}): "
                             "list checkpoints in increasing step order, each after step 0 (the base)")
        points.append(Point(point_name(step), step, p))
    return points


def check_weights(path: Path, what: str) -> None:
    """Safetensors weights present; pickled ones alone are refused (never unpickled)."""
    if any(path.glob("*.safetensors")):
        return
    pickled = sorted({f.name for pattern in PICKLED for f in path.glob(pattern)})
    if pickled:
        raise InputError(f"{what}: {path} holds pickled weights only ({', '.join(pickled)}), which are never "
                         "loaded: save it with safetensors (model.save_pretrained(dir, safe_serialization=True))")
    raise InputError(f"{what}: no *.safetensors weights in {path}")


def _vocab(path: Path) -> dict | None:
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        return None
    from grpo_amp.tasks.base import load_tokenizer

    return load_tokenizer(path).get_vocab()


def check_point(point: Point, base: Point, base_vocab: dict | None = None) -> None:
    """The checkpoint is the base's architecture and tokenizer, with safetensors weights."""
    what = f"audit.checkpoints: {point.path}"
    check_weights(point.path, what)
    mine, theirs = _config(point.path, what), _config(base.path, f"audit base {base.path}")
    for key in ARCHITECTURE_KEYS:
        if mine.get(key) != theirs.get(key):
            raise InputError(f"{what} is another architecture than the base {base.path}: config.json {key} "
                             f"{mine.get(key)!r} vs {theirs.get(key)!r}")
    vocab = _vocab(point.path)  # a checkpoint saved without a tokenizer uses the base's
    if vocab is not None:
        base_vocab = base_vocab if base_vocab is not None else _vocab(base.path)
        if base_vocab is not None and vocab != base_vocab:
            raise InputError(f"{what} has another tokenizer than the base {base.path} (its vocabulary differs)")


def check_points(points: list[Point]) -> None:
    base = points[0]
    check_weights(base.path, f"audit base {base.path}")
    base_vocab = _vocab(base.path)
    for p in points[1:]:
        check_point(p, base, base_vocab)


def trainer_log(point: Point) -> dict:
    """What the trainer logged at the checkpoint's step (trainer_state.json's log_history), JSON only."""
    state = point.path / "trainer_state.json"
    if point.step == 0 or not state.is_file():
        return {}
    history = json.loads(state.read_text()).get("log_history", [])
    logged = [h for h in history if h.get("step") == point.step]
    out = {}
    for h in logged:
        out.update({f"trainer_{k.replace('/', '_')}": float(h[k]) for k in TRAINER_LOG_KEYS
                    if isinstance(h.get(k), (int, float))})
    return out
