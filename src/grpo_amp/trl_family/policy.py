"""GRPO by TRL 1.16's ``GRPOTrainer``, behind the contract of ``grpo.trainer.train``.

    history = train_trl(policy, ref, task, cfg, save_iteration=lambda n, pi: meter(pi, n))

One theory iteration n = one TRL generation round: pi_{n-1} generates G completions for every train
question (one generation batch of Q x G), then ``num_iterations`` = mu = ``grpo.inner_steps``
optimiser steps on those groups. ``_Rounds`` (a TrainerCallback) sees each round end, measures C1's
sampled surrogate against a frozen pi_{n-1} exactly as our trainer does, and hands pi_n to
``save_iteration`` (the train stage's checkpoint or PosMeter), so every output file of the train rule
is the same. The reward is our verifier (``task.reward``). TRL trains ``policy.model`` in place.

TRL is imported here only, inside the function: other stages never pay for it. Offline: no hub,
no report_to, everything TRL writes goes to a temporary directory.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from grpo_amp.config import Config
from grpo_amp.grpo.loss import group_advantages
from grpo_amp.grpo.trainer import History, sampled_surrogate
from grpo_amp.io import InputError
from grpo_amp.schema import IterationMetrics
from grpo_amp.trl_family.settings import format_mapping, to_trl

log = logging.getLogger(__name__)


def _require_trl():
    try:
        import datasets  # noqa: F401
        import trl
    except ImportError:
        raise InputError("policy=trl needs TRL (trl>=1.16,<1.17) and datasets: pip install -e .") from None
    if not trl.__version__.startswith("1.16"):
        raise InputError(f"policy=trl is mapped onto TRL 1.16; found trl {trl.__version__}")
    return trl


def _reward_function(task, T: int):
    """Our verifier on TRL's completions (lists of ids, <eos> included when drawn); records each call's rewards."""
    import torch

    from grpo_amp.grpo.rollout import Rollout

    calls: list = []

    def reward(prompts, completions, completion_ids, question, **_):
        tokens = torch.full((len(completion_ids), 1, T), task.pad_id, dtype=torch.long)  # (B, 1, T)
        mask = torch.zeros((len(completion_ids), 1, T), dtype=torch.bool)
        for i, ids in enumerate(completion_ids):
            tokens[i, 0, : len(ids)] = torch.as_tensor(ids[:T])
            mask[i, 0, : len(ids)] = True
        r = task.reward(Rollout(torch.as_tensor(question), tokens, mask))[:, 0]  # (B,)
        calls.append((torch.as_tensor(question), r))
        return r.tolist()

    reward.__name__ = "verifier"  # TRL logs rewards/<name>
    return reward, calls


def train_trl(policy, ref, task, cfg: Config,
              save_iteration: Callable[[int, object], None] | None = None,
              log_metrics: Callable[[int, dict], None] | None = None,
              output_dir: str | Path | None = None, save_steps: int | None = None) -> History:
    """Run ``cfg.grpo.iterations`` GRPO rounds of TRL's GRPOTrainer from ``policy`` (= pi_ref at the start).

    ``output_dir`` with ``save_steps``: TRL's own output directory and checkpoint-<step> folders (what a
    user's run leaves behind: the audit reads them); otherwise TRL writes to a temporary directory, saving nothing.
    """
    mapping = to_trl(cfg)  # one-line InputError for what TRL cannot express, before anything is imported
    if not hasattr(policy, "model") or not hasattr(ref, "save"):
        raise InputError("policy=trl needs a transformer policy (a Hugging Face causal LM)")
    for line in format_mapping(mapping).splitlines():
        log.info(line)
    trl = _require_trl()
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never ask a hub
    hf_logging.set_verbosity_error()
    device = policy.device
    questions = task.split_ids("train")
    Q, G, mu, N, T = len(questions), cfg.grpo.group_size, cfg.grpo.inner_steps, cfg.grpo.iterations, task.max_new_tokens
    prompts = [str(p) for p in task.questions.loc[questions.numpy(), "prompt"]]
    ours = (task.prompt_ids[questions].tolist() if hasattr(task, "prompt_ids")
            else [task.prompt_token_ids[int(q)] for q in questions])  # a FileTask's prompts are ragged
    if task.tokenizer(prompts)["input_ids"] != ours:  # TRL tokenizes the text itself
        raise InputError("policy=trl: the tokenizer encodes the prompts' text to other ids than the task's")
    if mapping.temperature != 1.0:
        from grpo_amp.policies.hf import temperature_note

        log.warning(temperature_note(mapping.temperature))
    reward, reward_calls = _reward_function(task, T)
    history = History()
    generator = torch.Generator(device=device).manual_seed(cfg.seed)  # C1's fresh groups, as in train()
    train_questions = questions.to(device)

    class _Rounds(TrainerCallback):
        """Round boundaries: freeze pi_{n-1} before its generation, measure and save pi_n after its mu steps.

        The measurement runs in ``on_log``: with logging_steps = mu, HF's Trainer logs exactly once per
        round, after that round's last optimiser step (on_step_end comes before the log), and the log
        carries TRL's means over the round.
        """

        def __init__(self):
            self.old, self.start, self.done = None, 0.0, 0

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step % mu == 0:  # the next step generates: the model is pi_{n-1}
                self.old = policy.frozen_copy()
                self.start = time.perf_counter()
                self.n_calls = len(reward_calls)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.global_step % mu or state.global_step // mu <= self.done or "loss" not in (logs or {}):
                return
            n = self.done = state.global_step // mu
            if len(reward_calls) != self.n_calls + 1:
                raise RuntimeError(f"TRL generated {len(reward_calls) - self.n_calls} times in round {n}, not once")
            asked, r = reward_calls[-1]
            if not torch.equal(asked, questions.repeat_interleave(G)):  # prompt i's G completions, in order
                raise RuntimeError("TRL's generation batch is not every train question x G in order")
            rewards = r.view(Q, G)                                                    # (Q, G)
            _, zero_spread = group_advantages(rewards)
            c1 = sampled_surrogate(policy, self.old, task, train_questions, cfg, generator)
            logs = logs or {}
            kl_tok = logs.get("kl", 0.0 if not mapping.explicit_ref_penalty else math.nan)
            reported = IterationMetrics(
                loss=float(logs["loss"]), pg_objective=math.nan,
                # TRL logs the token-mean k3; times the mean length: per sequence, like ours
                kl_ref=float(kl_tok) * float(logs.get("completions/mean_length", math.nan)),
                kl_prev=math.nan, mean_reward=float(rewards.mean()),
                zero_spread_frac=float(zero_spread.double().mean()),
                clip_frac=float(logs.get("clip_ratio/region_mean", math.nan)),
                inner_steps_taken=int(cfg.grpo.inner_steps))  # TRL's mu steps per generation round
            metrics = {"iteration": n, **reported.values(), "seconds": time.perf_counter() - self.start}
            history.metrics.append(metrics)
            history.c1.append(c1.assign(iteration=n))
            if cfg.grpo.reset_optimizer:  # each iteration solves its own problem (C2): fresh Adam moments
                opt = trainer.optimizer
                getattr(opt, "optimizer", opt).state.clear()
            self.old = None
            if save_iteration is not None:
                save_iteration(n, policy)
            if log_metrics is not None:
                log_metrics(n, metrics)

    rounds = _Rounds()
    with tempfile.TemporaryDirectory(prefix="grpo-amp-trl-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_dir = Path(tmp) / "ref"
        ref.save(ref_dir)  # TRL builds its pi_ref from the policy config's _name_or_path: point it at ours
        model = policy.model
        name_or_path = getattr(model.config, "_name_or_path", "")
        model.config._name_or_path = str(ref_dir)
        args = trl.GRPOConfig(
            **mapping.kwargs,
            per_device_train_batch_size=Q * G, gradient_accumulation_steps=1, steps_per_generation=1,
            max_completion_length=T, max_steps=N * mu, logging_steps=mu,
            lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch", weight_decay=0.0, max_grad_norm=0.0,
            gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=device.type == "cpu",
            shuffle_dataset=False, dataloader_num_workers=0, report_to="none",
            disable_tqdm=True, log_completions=False, seed=cfg.seed,
            **({"output_dir": str(output_dir), "save_strategy": "steps", "save_steps": int(save_steps or mu)}
               if output_dir is not None else {"output_dir": str(Path(tmp) / "trl"), "save_strategy": "no"}),
        )
        dataset = Dataset.from_dict({"prompt": prompts * N, "question": questions.tolist() * N})
        threads = torch.get_num_threads()
        try:
            trainer = trl.GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset,
                                      processing_class=task.tokenizer, callbacks=[rounds])
            for cb in (PrinterCallback, ProgressCallback):
                trainer.remove_callback(cb)
            torch.set_num_threads(threads)  # whatever the trainer's setup did
            if trainer.accelerator.unwrap_model(trainer.model) is not model:
                raise RuntimeError("TRL must train the policy's own model in place")
            if mapping.explicit_ref_penalty and trainer.ref_model is None:
                raise RuntimeError("TRL loaded no reference model although beta > 0")
            trainer.train()
        finally:
            model.config._name_or_path = name_or_path
    if rounds.done != N:
        raise RuntimeError(f"TRL ran {rounds.done} generation rounds, not grpo.iterations={N}")
    policy.eval()
    return history
