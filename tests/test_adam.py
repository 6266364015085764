"""grpo.adam.Adam against torch.optim.Adam: the same iterates on the same gradients (the optimiser R3 and
the trainers run; a wrong bias correction or eps placement moves every practice number)."""

from __future__ import annotations

import pytest
import torch

from grpo_amp.grpo.adam import Adam


@pytest.mark.parametrize("lr", [1e-3, 0.1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # fp32 on the CPU: torch's fused kernel
def test_adam_matches_torch_optim_adam_step_by_step(lr, dtype):
    torch.manual_seed(0)
    x0 = [torch.randn(5, 3, dtype=dtype), torch.randn(7, dtype=dtype)]
    ours, theirs = [p.clone().requires_grad_() for p in x0], [p.clone().requires_grad_() for p in x0]
    opt_ours = Adam(ours, lr=lr)
    assert opt_ours.fused == (dtype == torch.float32)
    opt_theirs = torch.optim.Adam(theirs, lr=lr, fused=True) if opt_ours.fused else \
        torch.optim.Adam(theirs, lr=lr, foreach=False)
    target = [torch.randn_like(p) for p in x0]
    for step in range(25):
        for params, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad(set_to_none=True)
            # a loss whose gradient changes scale and sign along the way, and one parameter
            # without a gradient on odd steps (Adam must leave it and its moments alone)
            loss = sum(((p - t) ** 4).sum() * (1 + step % 3) for p, t in zip(params, target) if not
                       (p is params[1] and step % 2))
            loss.backward()
            opt.step()
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=0, atol=0)  # operation for operation: bit-identical


def test_adam_moves_downhill_at_lr_per_step():
    """Adam's first step has size lr in every coordinate (m/sqrt(v) = sign(g)): a closed form."""
    x = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
    opt = Adam([x], lr=0.01)
    (x ** 2).sum().backward()
    opt.step()
    torch.testing.assert_close(x.detach(), torch.tensor([0.99, -1.99, 2.99], dtype=torch.float64),
                               rtol=0, atol=1e-9)


def test_constructing_and_stepping_adam_does_not_import_torch_dynamo():
    """The reason this module exists: torch.optim imports torch._dynamo (1 s) on construction."""
    import subprocess
    import sys

    code = ("import sys, torch; from grpo_amp.grpo.adam import Adam\n"
            "for dtype in (torch.float32, torch.float64):\n"
            "    x = torch.zeros(3, dtype=dtype, requires_grad=True); o = Adam([x], lr=0.1)\n"
            "    (x - 1).pow(2).sum().backward(); o.step()\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
