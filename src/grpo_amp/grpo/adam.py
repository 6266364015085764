"""Adam (Kingma & Ba, 2015) as torch.optim.Adam computes it, in a dozen lines, without torch.optim.

    optimiser = Adam(params, lr=1e-3)
    optimiser.zero_grad(set_to_none=True); loss.backward(); optimiser.step()

Why not torch.optim.Adam: constructing any torch.optim optimiser imports torch._dynamo (about 1 s
on these machines), and at smoke scale a tabular train job is 3-4 s, so every process paid a third
of its time for a compiler it never uses. The update is torch's single-tensor Adam operation for
operation (lerp, addcmul, bias corrections as Python floats, addcdiv); tests/test_adam.py checks it
against torch.optim.Adam step by step.
"""

from __future__ import annotations

import torch


class Adam:
    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p in params]
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.steps = [0] * len(self.params)  # per parameter, as torch's: a step without its gradient does not count

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        for i, (param, exp_avg, exp_avg_sq) in enumerate(zip(self.params, self.exp_avg, self.exp_avg_sq)):
            if param.grad is None:
                continue
            self.steps[i] += 1
            step_size = self.lr / (1 - self.beta1 ** self.steps[i])
            bias_correction2_sqrt = (1 - self.beta2 ** self.steps[i]) ** 0.5
            grad = param.grad
            exp_avg.lerp_(grad, 1 - self.beta1)                               # m_t
            exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)  # v_t
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)
