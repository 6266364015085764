"""Which code runs each policy's GRPO iterations: the one place where a policy's name meets a function.

    history = updates.LOOPS[cfg.policy.name.value](policy, ref, task, cfg, save_iteration=..., log_metrics=...)

``registry.POLICY_TABLE`` says what a policy is (its family, tolerance, sweeps, label: data only);
``LOOPS`` below says what it runs. Most policies run our loop, ``trainer.train``, with their own
per-iteration update (``ours(update)``); TRL runs its own loop. Follow an entry to reach the loss:
``ours(trainer.grpo_update)`` -> ``trainer.train`` -> ``grpo_update`` -> ``loss.grpo_loss``.

Adding a policy (e.g. a new rung, a factorial cell, an estimator's update):
  1. write its update with the trainer's signature,
         update(policy, old, ref, task, questions, cfg, generator) -> schema.IterationMetrics
     in the module of its floor (grpo/rungs.py for a tabular rung, grpo/trainer.py beside grpo_update, ...);
  2. add one line to ``LOOPS``:  "my_policy": ours(rungs.my_update),
  3. add one ``PolicySpec("my_policy", ...)`` to ``registry.POLICY_TABLE``.
A policy with a loop of its own (like TRL's) binds a function with ``trainer.train``'s signature instead
of ``ours(...)``; import a heavy library inside it, as ``trl_loop`` does, so that other runs never pay for it.
tests/test_updates.py checks that the table and the registry name the same policies.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from grpo_amp.grpo import e3_controls, lm_rungs, rungs
from grpo_amp.grpo.trainer import History, Update, exact_update, grpo_update, train

Loop = Callable[..., History]  # (policy, ref, task, cfg, save_iteration=None, log_metrics=None) -> History


def ours(update: Update) -> Loop:
    """Our iteration loop (``trainer.train``) calling ``update`` once per iteration."""
    return partial(train, update=update)


def trl_loop(policy, ref, task, cfg, save_iteration=None, log_metrics=None) -> History:
    """TRL 1.16's GRPOTrainer as the loop (trl_family.policy.train_trl)."""
    from grpo_amp.trl_family.policy import train_trl  # TRL takes seconds to import: only its own runs pay

    return train_trl(policy, ref, task, cfg, save_iteration=save_iteration, log_metrics=log_metrics)


LOOPS: dict[str, Loop] = {
    "tabular_exact": ours(exact_update),                  # C2's closed form in the loop (self-check)
    "tabular_r1": ours(rungs.population_argmax),          # E5 R1
    "tabular_r2": ours(rungs.finite_group_argmax),        # E5 R2
    "tabular_r3": ours(rungs.exact_objective_steps),      # E5 R3
    "tabular_r4": ours(grpo_update),                      # E5 R4: grpo.groups_per_question = m
    "tabular_r5": ours(rungs.one_group_argmax),           # E5 R5
    "tabular_sgd": ours(grpo_update),                     # E5 R6: practice on a table
    # E5's factorial: R3, R5, R6 with the true p_{n-1}'s advantage (registry.FACTORS)
    "tabular_true_p_steps": ours(rungs.true_p_exact_steps),
    "tabular_true_p_group_argmax": ours(rungs.true_p_one_group_argmax),
    "tabular_true_p_sgd": ours(rungs.true_p_group_steps),
    "transformer": ours(grpo_update),
    "transformer_control": ours(grpo_update),             # with grpo.inner_tol (conf/grpo/transformer_control.yaml)
    "transformer_r1": ours(lm_rungs.transformer_population_argmax),    # E5 R1 on the transformer
    "transformer_r2": ours(lm_rungs.transformer_finite_group_argmax),  # E5 R2 on the transformer
    # the table's rungs on the transformer's twin (family twin: the same questions and p_ref)
    "twin_r1": ours(rungs.population_argmax),
    "twin_r2": ours(rungs.finite_group_argmax),
    "twin_r4": ours(grpo_update),
    "twin_sgd": ours(grpo_update),
    "transformer_shuffled": ours(e3_controls.shuffled_reward_update),  # E3's no-signal control
    "trl": trl_loop,
}


def loop_of(policy: str) -> Loop:
    if policy not in LOOPS:
        raise KeyError(f"no loop bound to policy {policy!r} in grpo_amp.grpo.updates.LOOPS")
    return LOOPS[policy]
