"""Adam (Kingma & Ba, 2015) as torch.optim.Adam computes it, without torch.optim.

    optimiser = Adam(params, lr=1e-3)
    optimiser.zero_grad(set_to_none=True); loss.backward(); optimiser.step()

Why not torch.optim.Adam: constructing any torch.optim optimiser imports torch._dynamo (about 1 s
on these machines), and at smoke scale a tabular train job is 3-4 s, so every process paid a third
of its time for a compiler it never uses. For fp32 CPU parameters the update is torch's fused
kernel itself (``torch._fused_adam_``, what ``Adam(fused=True)`` calls: one pass per tensor, 2.7x
faster than the loop on the transformer); otherwise torch's single-tensor update operation for
operation (lerp, addcmul, bias corrections as Python floats, addcdiv). tests/test_adam.py checks
both against torch.optim.Adam, bit for bit.
"""

from __future__ import annotations

import torch


class Adam:
    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p in params]
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        # per parameter, as torch's: a step without its gradient does not count (a float tensor: the fused op's type)
        self.steps = [torch.tensor(0.0) for _ in self.params]
        self.fused = bool(self.params) and all(p.device.type == "cpu" and p.dtype == torch.float32 for p in self.params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        for i in live:
            self.steps[i] += 1
        if self.fused:
            pick = lambda xs: [xs[i] for i in live]  # noqa: E731
            torch._fused_adam_(pick(self.params), [self.params[i].grad for i in live], pick(self.exp_avg),
                               pick(self.exp_avg_sq), [], pick(self.steps), amsgrad=False, lr=self.lr,
                               beta1=self.beta1, beta2=self.beta2, weight_decay=0.0, eps=self.eps, maximize=False)
            return
        for i in live:
            param, exp_avg, exp_avg_sq, step = self.params[i], self.exp_avg[i], self.exp_avg_sq[i], self.steps[i].item()
            step_size = self.lr / (1 - self.beta1 ** step)
            bias_correction2_sqrt = (1 - self.beta2 ** step) ** 0.5
            grad = param.grad
            exp_avg.lerp_(grad, 1 - self.beta1)                                       # m_t
            exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)   # v_t
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)
