"""grpo.updates binds every registry policy to the code it runs, and nothing else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from grpo_amp import registry
from grpo_amp.grpo import rungs, trainer, updates

SRC = Path(__file__).resolve().parents[1] / "src" / "grpo_amp"


def test_every_policy_has_a_loop_and_every_loop_a_policy():
    assert set(updates.LOOPS) == set(registry.POLICY_NAMES)


@pytest.mark.parametrize("policy, update", [
    ("tabular_exact", trainer.exact_update), ("tabular_r1", rungs.population_argmax),
    ("tabular_r2", rungs.finite_group_argmax), ("tabular_r3", rungs.exact_objective_steps),
    ("tabular_r4", trainer.grpo_update), ("tabular_r5", rungs.one_group_argmax),
    ("tabular_sgd", trainer.grpo_update), ("transformer", trainer.grpo_update),
    ("transformer_control", trainer.grpo_update), ("tabular_true_p_steps", rungs.true_p_exact_steps),
    ("tabular_true_p_group_argmax", rungs.true_p_one_group_argmax), ("tabular_true_p_sgd", rungs.true_p_group_steps)])
def test_our_loop_runs_the_policys_update(policy, update):
    loop = updates.loop_of(policy)
    assert loop.func is trainer.train and loop.keywords == {"update": update}


def test_trl_runs_its_own_loop_and_an_unknown_policy_is_refused():
    assert updates.loop_of("trl") is updates.trl_loop
    with pytest.raises(KeyError, match="no loop bound to policy 'nope'"):
        updates.loop_of("nope")


def test_no_module_names_code_by_a_string():
    """The "module:function" strings resolved by importlib are gone: dispatch is by imports one can follow."""
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
                pytest.fail(f"{path.relative_to(SRC)}:{node.lineno} imports a module named by a string")


def test_checkpoint_io_does_not_import_the_policy_built_on_it():
    """policies/lm/checkpoint.py <-> policies/transformer.py was a cycle; the policy now imports the file layer only."""
    names = {n.module for n in ast.walk(ast.parse((SRC / "policies" / "lm" / "checkpoint.py").read_text()))
             if isinstance(n, ast.ImportFrom)}
    assert not any(m.startswith("grpo_amp.policies") and not m.startswith("grpo_amp.policies.lm") for m in names), names
