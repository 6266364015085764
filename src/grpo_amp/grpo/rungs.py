"""E5's tabular gap ladder: one change per rung, each an update with the trainer's signature.

    metrics = population_argmax(policy, old, ref, task, questions, cfg, generator)   # R1
    metrics = finite_group_argmax(...)     # R2: exact finite-G expected objective, maximised
    metrics = exact_objective_steps(...)   # R3: M Adam steps on R2's objective
    # R4 is trainer.grpo_update with grpo.groups_per_question = m (m = 1: R6, practice itself)
    metrics = one_group_argmax(...)        # R5: one sampled group's objective, maximised in closed form

The same rungs as a 2 x 2 x 2 factorial (issue 18, ``registry.FACTORS``; the numbers: grpo_amp.analysis.factorial).
Three changes separate R1 from practice (R6), each with two levels, R1's first:

    advantage  true_p: A(r; p_{n-1}), docs/theory.md's population advantage from the exact PoS of pi_{n-1}
                       (known on a table)  |  group: the trainer's A_G from the group's own mean/std
    optimiser  argmax: the iteration's maximiser (L-BFGS, or the closed form of a one-group objective)
                       |  steps: M steps of the trainer's Adam from pi_{n-1}
    objective  exact:  the expectation over groups of pi_{n-1}, summed exactly  |  one_group: one sampled
                       group of G per question (sum_o pi(o) a(o), a(o) = sum_i [o_i = o] A_i / (G pi_old(o)))

    cell (advantage, optimiser, objective)  policy                       update
    true_p, argmax, exact                   tabular_r1 (R1)              population_argmax
    group,  argmax, exact                   tabular_r2 (R2)              finite_group_argmax
    group,  steps,  exact                   tabular_r3 (R3)              exact_objective_steps
    group,  argmax, one_group               tabular_r5 (R5)              one_group_argmax
    group,  steps,  one_group               tabular_sgd (R6)             trainer.grpo_update
    true_p, steps,  exact                   tabular_true_p_steps         true_p_exact_steps
    true_p, argmax, one_group               tabular_true_p_group_argmax  true_p_one_group_argmax
    true_p, steps,  one_group               tabular_true_p_sgd           true_p_group_steps

The exact expectation of the true-p one-group objective is the population objective itself (A depends on
o only through r, and E_{o ~ pi_old}[pi/pi_old A] = sum_o pi(o) A(o)); that of the group one is R2's,
because E over groups of A_G,i given r_i is E1's weight (``finite_group_advantage``). So each exact
cell is the expectation of the one-group cell beside it, as R2/R3 are of R5/R6. R4 (m groups) lies
between the two objective levels and is not a cell; tabular_exact (C2's closed form) is the self-check.

Every rung works on a TabularPolicy (logits (N, K) float64, task.correct (N, K) bool) and maximises,
per question, docs/theory.md's iteration objective (C2)
    J(pi) = sum_o pi(o) A(o) - beta KL(pi || pi_ref) [- beta_prev KL(pi || pi_old)]      (kl=ref/both)
    J(pi) = sum_o pi(o) A(o) - beta KL(pi || pi_old)                                   (kl=mirror)
with the rung's A. R1 and R2 find the maximiser numerically (L-BFGS, nothing of C2/C3 in the path):
they are the non-circular checks of C2/C3 and of C3 with E1's S_G. R1/R2 raise ``ArgmaxError`` when
the optimiser stops short of its tolerance, never return a silent number.

Metrics have the trainer's keys; a value an exact rung has no sample for is its expectation under
pi_old (mean_reward = mean p_old, zero_spread_frac = mean P(all G rewards equal)) or NaN (R1 has no
group; clip_frac where nothing is clipped).
"""
from __future__ import annotations

import math

import torch

from grpo_amp import estimators
from grpo_amp.config import Config, VariantConfig
from grpo_amp.estimators import Estimator
from grpo_amp.grpo.loss import KL_TARGETS, group_advantages
from grpo_amp.io import InputError
from grpo_amp.schema import IterationMetrics
from grpo_amp.grpo.rollout import Rollout

NAN = float("nan")
# A logit this far below a row's largest is exactly zero mass after softmax (exp(-1e4) underflows),
# yet finite: the exact KL of the next iteration stays 0 * finite = 0 there, never NaN.
ZERO_MASS_LOGIT = 1e4
RUNAWAY_ADV = 1e12  # dynamic sampling's |A| beyond which it is taken as infinite (Z ~ 0, see finite_group_advantage)
UNDERFLOW_ADV = 1000.0  # |A|/b beyond which exp(A/b) relative to an O(1) output is 0 in float64 (e^-745 underflows)
CHUNK = 25  # L-BFGS iterations between two checks of R1/R2's convergence certificate


class ArgmaxError(InputError):
    """R1/R2's optimiser stopped before its tolerance: the rung has no number to report."""


# --------------------------------------------------------------------------- advantages per output
def _success_mass(old_logits: torch.Tensor, correct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(p_old, 1 - p_old) per question, each summed on its own set: 1 - p keeps its digits near p = 1."""
    pi_old = torch.softmax(old_logits, dim=-1)                # (Q, K)
    p = (pi_old * correct).sum(-1)                            # (Q,)
    q = (pi_old * ~correct).sum(-1)                           # (Q,)
    return p, q


def _estimator(variant: VariantConfig, estimator: Estimator | None) -> Estimator:
    return estimator or estimators.resolve("grpo", variant.norm.value, variant.std.value, variant.eps)


def batch_std(p: torch.Tensor) -> torch.Tensor:
    """sigma_b of TRL's "batch" estimator in expectation: sqrt(pbar (1 - pbar)) over the batch's
    questions (docs/theory.md E6; a finite batch's sample std differs by O(1/N))."""
    pbar = p.mean()
    return torch.sqrt(pbar * (1.0 - pbar))


def population_advantage(p: torch.Tensor, q: torch.Tensor, variant: VariantConfig,
                         estimator: Estimator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """docs/theory.md's population A at r = 1 and r = 0: (1 - p, -p) [/ sqrt(p(1-p) + eps)], q = 1 - p.

    mean_std with eps = 0 uses sqrt(q/p) and -sqrt(p/q): the same numbers, with the limits +inf
    (p = 0) and -inf (q = 0) that a certain question has, instead of 0/0. ``estimator`` (E6; default:
    the variant's own): rloo's limit is mean_only; eps outside the root divides by sqrt(pq) + eps; batch
    by sigma_b (+ eps); dynamic sampling drops out (Z -> 1 as G -> infinity); pass@k has no limit here.
    """
    est = _estimator(variant, estimator)
    if est.pass_k is not None:
        raise InputError(f"estimator {est.name!r} (pass@k) has no population limit: R1 cannot run it")
    if est.norm in ("mean_only", "rloo"):
        return q, -p
    if est.batch:
        sd = batch_std(p)
        denom = torch.sqrt(sd ** 2 + est.eps) if est.eps_inside else sd + est.eps
        return q / denom, -p / denom
    if est.eps == 0.0:
        return torch.sqrt(q / p), -torch.sqrt(p / q)
    denom = torch.sqrt(p * q + est.eps) if est.eps_inside else torch.sqrt(p * q) + est.eps
    return q / denom, -p / denom


def finite_group_advantage(p: torch.Tensor, q: torch.Tensor, group_size: int, variant: VariantConfig,
                           estimator: Estimator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """E[A_G,i | r_i = 1] and E[A_G,i | r_i = 0] over groups of pi_old, by binomial sums.

    Output i's advantage depends on the group only through K, the number of successes among the
    other G - 1 outputs, K ~ Bin(G - 1, p_old). The advantage of each (r_i, K) is the trainer's own
    (``group_advantages`` on a written-out group: its mean, std, eps and zero-spread rule), for the
    run's ``estimator`` (E6; default: the variant's own). batch: r - group mean over sigma_b of the
    questions given (``batch_std``). Dynamic sampling: the objective given spread, i.e. divided by
    Z = 1 - p^G - q^G (groups without spread have A = 0 and are redrawn).
    """
    est = _estimator(variant, estimator)
    G = group_size
    k = torch.arange(G, dtype=torch.float64)                                  # (G,): K = 0..G-1
    others = (torch.arange(G - 1, dtype=torch.float64)[None, :] < k[:, None]).to(torch.float64)  # (G, G-1)
    groups = torch.cat([torch.cat([torch.ones(G, 1, dtype=torch.float64), others], 1),   # r_i = 1, K others
                        torch.cat([torch.zeros(G, 1, dtype=torch.float64), others], 1)])  # r_i = 0, K others
    if est.batch:
        adv, _ = group_advantages(groups, "mean_only")                        # (2G, G): r - group mean
        sd = batch_std(p)
        adv = adv / (torch.sqrt(sd ** 2 + est.eps) if est.eps_inside else sd + est.eps)
    else:
        adv, _ = group_advantages(groups, **est.loss_kwargs())                # (2G, G)
    a_plus, a_minus = adv[:G, 0], adv[G:, 0]                                  # (G,) each
    n = G - 1
    log_comb = math.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)        # (G,)
    # xlogy: 0 * log 0 = 0, so p_old = 0 or 1 gives the point mass it should
    log_pmf = log_comb + torch.special.xlogy(k, p[:, None]) + torch.special.xlogy(n - k, q[:, None])  # (Q, G)
    pmf = torch.exp(log_pmf)
    w_plus, w_minus = pmf @ a_plus, pmf @ a_minus
    if est.dynamic_sampling:
        # Z = 1 - p^G - q^G, the share of groups with spread (the objective is conditioned on it), from
        # the smaller of p, q: 1 - p^G cancels to 0 in float64 long before q does (p -> 1 runs away, E6)
        small = torch.minimum(p, q)
        z = -torch.expm1(G * torch.log1p(-small)) - small ** G
        w_plus, w_minus = w_plus / z, w_minus / z
        # where the redraws (almost) never end, A beyond RUNAWAY_ADV is its limit: -inf on the side
        # pi_old has (almost) no mass, so the maximiser puts none there (exp(-1e12/beta) is 0 anyway)
        w_plus = torch.where(w_plus.abs() < RUNAWAY_ADV, w_plus, torch.where(p < q, torch.inf, 0.0))
        w_minus = torch.where(w_minus.abs() < RUNAWAY_ADV, w_minus, torch.where(p > q, -torch.inf, 0.0))
    return w_plus, w_minus


def _per_output(correct: torch.Tensor, a_plus: torch.Tensor, a_minus: torch.Tensor) -> torch.Tensor:
    return torch.where(correct, a_plus[:, None], a_minus[:, None])  # (Q, K): A(o) depends on o via r only


def expected_zero_spread(p: torch.Tensor, q: torch.Tensor, group_size: int) -> torch.Tensor:
    """P(all G rewards equal) = p^G + (1 - p)^G per question."""
    return p ** group_size + q ** group_size


# --------------------------------------------------------------------------- the exact objective
def _kl_terms(variant: VariantConfig) -> list[tuple[float, str]]:
    """(coefficient, "ref" or "old") of each KL term of the variant: loss.KL_TARGETS's table, with its values."""
    return [(getattr(variant, coef_field), target) for coef_field, target in KL_TARGETS[variant.kl.value]]


def exact_objective(logits: torch.Tensor, adv: torch.Tensor, log_ref: torch.Tensor, log_old: torch.Tensor,
                    variant: VariantConfig, support: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per question (Q,): pg = sum_o pi(o) A(o), the exact KLs, and J = pg - penalties.

    ``support`` (Q, K) bool: outputs allowed mass (the others are -inf logits, skipped in the sums).
    """
    if support is not None:
        logits = logits.masked_fill(~support, -torch.inf)
    logpi = torch.log_softmax(logits, dim=-1)  # (Q, K)
    pi = logpi.exp()
    # 0 * log 0 = 0 and 0 * A = 0, also where A or an anchor is infinite; the infinities are replaced
    # before the product, not after it, so that no 0 * inf reaches the gradient either
    live = pi > 0
    safe = lambda x: torch.where(live, x, 0.0)  # noqa: E731
    logpi_live = safe(logpi)
    pg = (pi * safe(adv)).sum(-1)
    targets = {"ref": log_ref, "old": log_old}
    kl = {"ref": torch.zeros_like(pg), "old": torch.zeros_like(pg)}
    penalty = torch.zeros_like(pg)
    for coef, target in _kl_terms(variant):
        kl[target] = (pi * (logpi_live - safe(targets[target]))).sum(-1)
        penalty = penalty + coef * kl[target]
    return {"pg": pg, "kl_ref": kl["ref"], "kl_old": kl["old"], "objective": pg - penalty}


def _metrics(terms: dict[str, torch.Tensor], mean_reward, zero_spread, clip_frac=NAN) -> IterationMetrics:
    return IterationMetrics(loss=float(-terms["objective"].mean()), pg_objective=float(terms["pg"].mean()),
                            kl_ref=float(terms["kl_ref"].mean()), kl_prev=float(terms["kl_old"].mean()),
                            mean_reward=float(mean_reward), zero_spread_frac=float(zero_spread),
                            clip_frac=float(clip_frac), inner_steps_taken=NAN)  # not grpo_update's inner loop


# --------------------------------------------------------------------------- R1/R2's optimiser
def _support(adv: torch.Tensor, log_ref: torch.Tensor, log_old: torch.Tensor,
             variant: VariantConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Which outputs may carry mass, and A on them made finite.

    An output whose KL anchor has no mass (pi_ref or pi_old = 0 where penalised) or whose A is -inf
    gets none; where some output has A = +inf (eps = 0, p_old = 0), only those do, and among them
    A is a constant (0), so the KL alone splits the mass. No closed form of the maximiser is used.
    """
    support = torch.isfinite(adv) | (adv == torch.inf)
    for _, target in _kl_terms(variant):
        support &= torch.isfinite({"ref": log_ref, "old": log_old}[target])
    plus_inf = (adv == torch.inf) & support
    support = torch.where(plus_inf.any(-1, keepdim=True), plus_inf, support)
    finite_adv = torch.where(support & torch.isfinite(adv), adv, 0.0)
    if not support.any(-1).all():
        raise ArgmaxError("a question has no output that can carry mass (every anchor or advantage excludes it)")
    return support, finite_adv


def maximise(adv: torch.Tensor, log_ref: torch.Tensor, log_old: torch.Tensor, variant: VariantConfig,
             tol: float, max_iter: int, rung: str = "R1") -> torch.Tensor:
    """argmax_pi J(pi) per question by L-BFGS (strong Wolfe); returns the maximiser's logits (Q, K).

    Parametrisation: pi = w^2 / |w|^2 per question (w = sqrt(pi) up to scale). In w the Fisher metric
    is 4 I, so near the maximiser J's curvature is the same in every direction whatever pi's masses
    (on the logits it is pi's covariance, from 1 down to 1e-10 here: L-BFGS on the logits was still
    5e-7 from the tolerance after 5000 iterations at 256 x 16). Questions are independent: L-BFGS runs
    on the sum of their objectives, each divided by the total KL strength b = beta (+ beta_prev).

    Certificate: in those units the gradient in the logits is exactly g = pi (Delta - E_pi Delta),
    Delta = log pi - log pi*, so pi - pi* = g to first order and a question's PoS error is at most
    sum_o |g(o)|, with |g(o)| replaced by pi(o) where g(o) > 0 and larger (pi(o) cannot fall by more
    than itself): converged means that sum <= ``tol`` for every question (else ``ArgmaxError``). The start
    is the KL anchor, pi_ref (pi_old for mirror); nothing of the maximiser's form is used.

    Questions the joint L-BFGS run leaves short of the tolerance (a few, where A spans 1e12 and more:
    eps = 0 with p_old within 1e-24 of 0 or 1, whose optimum puts e^-1e12 on some outputs, past what
    w or float64 can follow) go on alone by ``_natural_gradient``.
    """
    support, adv = _support(adv, log_ref, log_old, variant)
    b = sum(coef for coef, _ in _kl_terms(variant))
    # each question's own units: its advantage range over b, so that a question with A = -3e8
    # (eps = 0, p_old = 1 - 1e-17) does not set the line search's scale for all the others
    spread = (adv.masked_fill(~support, -torch.inf).amax(-1) - adv.masked_fill(~support, torch.inf).amin(-1))
    scale = 1.0 + spread.nan_to_num(0.0) / b                                 # (Q,)
    start = log_old if variant.kl.value == "mirror" else log_ref
    start = torch.where(support, start - start.masked_fill(~support, -torch.inf).max(-1, keepdim=True).values, 0.0)
    w = torch.where(support, torch.exp(0.5 * start), 0.0).requires_grad_(True)  # (Q, K)

    def logits_of(w):
        # where w * w underflows to 0 (masses the optimum wants at e^-1e12 drive w there) or off the
        # support the inner where feeds log a 1: no log(0)'s infinite derivative (times a zero
        # gradient: NaN) reaches the backward pass; such an output has no mass (-inf logit)
        w2 = w * w
        live = support & (w2 > 0)
        return torch.where(live, torch.log(torch.where(live, w2, 1.0)), -torch.inf)

    def loss_of(z):
        return -exact_objective(z, adv, log_ref, log_old, variant, support)["objective"] / b  # (Q,)

    def closure():
        lbfgs.zero_grad()
        if not torch.isfinite(w).all():
            # a line-search trial point past float64's range: infinitely bad, so the search backs off;
            # its NaN never reaches the gradient
            w.grad = torch.zeros_like(w)
            return torch.tensor(torch.inf, dtype=w.dtype)
        loss = (loss_of(logits_of(w)) / scale).sum()
        loss.backward()
        return loss

    # stop on the certificate alone, checked every CHUNK iterations (never on L-BFGS's own tests)
    chunk = min(CHUNK, max_iter)
    lbfgs = torch.optim.LBFGS([w], lr=1.0, max_iter=chunk, max_eval=2 * chunk, history_size=20,
                              tolerance_grad=1e-300, tolerance_change=0.0, line_search_fn="strong_wolfe")
    z, g1 = _certificate(logits_of(w.detach()), loss_of, support)
    best = float(g1.max())
    for _ in range(-(-max_iter // chunk)):
        if (g1 <= tol).all() or not torch.isfinite(w).all():
            break
        lbfgs.step(closure)
        z, g1 = _certificate(logits_of(w.detach()), loss_of, support)
        worst = float(g1.max())
        if not worst < best:
            lbfgs.state.clear()  # a fresh curvature history: a stalled line search often moves again
        best = min(best, worst)
    bad = ~(g1 <= tol)  # NaN counts as not converged
    if bad.any():
        idx = torch.nonzero(bad)[:, 0]
        # a question whose w left float64's range (a NaN or +inf logit) starts again from its anchor
        lost = (torch.isnan(z[idx]) | (z[idx] == torch.inf)).any(-1, keepdim=True)
        z0 = torch.where(lost, start[idx], z[idx])
        z = z.clone()
        z[idx], g1_bad = _natural_gradient(z0, support[idx], lambda zz: -exact_objective(
            zz, adv[idx], log_ref[idx], log_old[idx], variant, support[idx])["objective"] / b, tol, max_iter)
        g1 = g1.clone()
        g1[idx] = g1_bad
    bad = ~(g1 <= tol)
    if bad.any():
        raise ArgmaxError(f"{rung} optimiser did not converge for {int(bad.sum())} of {len(g1)} questions "
                          f"(largest PoS error bound {float(g1.max()):.1e} > grpo.argmax_tol "
                          f"{tol:g} after grpo.argmax_max_iter={max_iter} L-BFGS iterations)")
    return z.masked_fill(~support, -torch.inf)


def _certificate(z: torch.Tensor, loss_of, support: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, each question's PoS error bound): see ``maximise``; a non-finite bound reads as inf."""
    z = z.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(loss_of(z).sum(), z)
    pi = torch.softmax(z.detach(), -1)
    # g > 0: pi(o) is above pi*(o), by at most pi(o) itself (g/pi can be 1e45 where A is -1e45)
    err = torch.where(g > 0, torch.minimum(g, pi), g.abs())
    return z.detach(), torch.where(support, err, 0.0).sum(-1).nan_to_num(torch.inf, torch.inf, torch.inf)


# A logit kept within this of its row's largest: e^-700 (1e-304) is still a positive float64, so every
# output on the support keeps a mass the gradient can see; it moves a PoS by < K * 1e-304.
LOGIT_FLOOR = 700.0
TRUST_NATS = 50.0  # the largest change of a log-ratio pi(o)/pi(o') in one natural-gradient step


def _natural_gradient(z: torch.Tensor, support: torch.Tensor, loss_of, tol: float, max_iter: int):
    """Natural-gradient descent on ``loss_of`` in the logits, each question with its own backtracking.

    The direction is autograd's gradient g in the logits divided by pi (F^+ g with F = diag(pi) - pi pi^T,
    the Fisher metric of the softmax: Amari 1998), the step 1 halved until the question's loss falls.
    It needs no common scale across questions, and it follows masses far below what w can: the logits
    are kept within LOGIT_FLOOR of their row's top. On this objective the natural gradient is the Newton
    direction (the KL's Hessian in pi is diag(1/pi)), so it lands in a few steps; it is still a generic
    method: nothing of C2's formula is written here, the direction is the objective's autograd gradient.
    Stops when every bound is within ``tol`` or no question's loss can fall any more; returns
    (logits, certificate bounds).
    """
    def clamp(z):
        # each row re-centred at its top (softmax is shift-free): logits never grow past LOGIT_FLOOR,
        # so an O(1) step is never lost to a 1e130 offset
        z = z - z.masked_fill(~support, -torch.inf).amax(-1, keepdim=True)
        return torch.where(support, torch.clamp(z, min=-LOGIT_FLOOR), -torch.inf)

    z = clamp(z)
    for _ in range(max_iter):
        zg = z.detach().requires_grad_(True)
        loss = loss_of(zg)                                                  # (Q,)
        (g,) = torch.autograd.grad(loss.sum(), zg)
        pi = torch.softmax(z, -1)
        direction = torch.where(support, -g / torch.where(support, pi, 1.0), 0.0)   # (Q, K)
        # a trust region of TRUST_NATS on the change of any log-ratio: where A spans 1e140 the first
        # steps only drain the outputs that must lose their mass, 50 nats at a time, and the finer
        # structure (lost to rounding beside 1e140 until then) follows once it is visible
        spread = (direction.masked_fill(~support, -torch.inf).amax(-1)
                  - direction.masked_fill(~support, torch.inf).amin(-1))                 # (Q,)
        step = torch.clamp(TRUST_NATS / spread.clamp(min=1e-300), max=1.0)
        accepted = torch.zeros_like(loss, dtype=torch.bool)
        new = z
        for _ in range(60):  # halve until the loss falls (2^-60: nothing left to gain)
            trial = clamp(z + step[:, None] * direction)
            with torch.no_grad():
                trial_loss = loss_of(trial)
            # a rise within the loss's own rounding counts as no rise: near the maximiser a Newton-size step
            # changes the loss by g^2 ~ 1e-18, below its last digit, and must still be taken
            ok = ~accepted & torch.isfinite(trial_loss) & (trial_loss <= loss + 1e-14 * (1 + loss.abs()))
            new = torch.where(ok[:, None], trial, new)
            accepted |= ok
            if accepted.all():
                break
            step = torch.where(accepted, step, step / 2)
        z = new.detach()
        _, bound = _certificate(z, loss_of, support)
        if not accepted.any() or bool((bound <= tol).all()):
            break
    return _certificate(z, loss_of, support)


# --------------------------------------------------------------------------- the rungs
def _tables(policy, old, ref, questions):
    correct = policy.task.correct[questions]                       # (Q, K)
    old_logits = old.logits.detach()[questions]
    log_old = torch.log_softmax(old_logits, -1)
    log_ref = torch.log_softmax(ref.logits.detach()[questions], -1)
    p, q = _success_mass(old_logits, correct)
    return correct, log_ref, log_old, p, q


def _write(policy, questions, logits: torch.Tensor) -> None:
    """pi_n's logits, with zero-mass outputs at a finite ZERO_MASS_LOGIT below the row's top."""
    with torch.no_grad():
        top = logits.max(-1, keepdim=True).values
        policy.logits[questions] = torch.where(torch.isfinite(logits), logits, top - ZERO_MASS_LOGIT)


def population_argmax(policy, old, ref, task, questions: torch.Tensor, cfg: Config, generator) -> IterationMetrics:
    """R1: maximise the exact population objective numerically; must equal C2 (and so C3)."""
    v, g = cfg.variant, cfg.grpo
    correct, log_ref, log_old, p, q = _tables(policy, old, ref, questions)
    adv = _per_output(correct, *population_advantage(p, q, v, cfg.advantage))
    logits = maximise(adv, log_ref, log_old, v, g.argmax_tol, g.argmax_max_iter, "R1")
    _write(policy, questions, logits)
    terms = exact_objective(logits, torch.where(torch.isfinite(adv), adv, 0.0), log_ref, log_old, v)
    return _metrics(terms, p.mean(), NAN)


def finite_group_argmax(policy, old, ref, task, questions: torch.Tensor, cfg: Config, generator) -> IterationMetrics:
    """R2: maximise the exact expected finite-G objective E_groups[(1/G) sum_i ratio_i A_G,i] - KL.

    E[ratio_i A_G,i] = sum_o pi(o) E[A_G,i | r_i = r(o)] (o_i ~ pi_old), so the expectation is the
    population objective with ``finite_group_advantage`` in place of A.
    """
    v, g = cfg.variant, cfg.grpo
    correct, log_ref, log_old, p, q = _tables(policy, old, ref, questions)
    adv = _per_output(correct, *finite_group_advantage(p, q, g.group_size, v, cfg.advantage))
    if cfg.advantage.dynamic_sampling:
        # near the runaway to p = 1 (E6) S^D = S_G/Z reaches 1e5 and more: an output with A/b beyond
        # UNDERFLOW_ADV gets mass exp(-1000) relative to the others, 0 in float64, so it is taken as
        # infinite (the optimiser's units cannot span 1 to 1e12); nothing is approximated by it
        b = sum(coef for coef, _ in _kl_terms(v))
        adv = torch.where(adv < -UNDERFLOW_ADV * b, -torch.inf, torch.where(adv > UNDERFLOW_ADV * b, torch.inf, adv))
        # the runaway questions alone: in one sum with the others L-BFGS stalls on them (measured at smoke)
        runaway = torch.isinf(adv).any(-1)
        logits = torch.empty_like(adv)
        for rows in (runaway, ~runaway):
            if rows.any():
                logits[rows] = maximise(adv[rows], log_ref[rows], log_old[rows], v, g.argmax_tol, g.argmax_max_iter,
                                        "R2")
    else:
        logits = maximise(adv, log_ref, log_old, v, g.argmax_tol, g.argmax_max_iter, "R2")
    _write(policy, questions, logits)
    terms = exact_objective(logits, adv, log_ref, log_old, v)
    return _metrics(terms, p.mean(), expected_zero_spread(p, q, g.group_size).mean())


def exact_objective_steps(policy, old, ref, task, questions: torch.Tensor, cfg: Config, generator) -> IterationMetrics:
    """R3: M steps of the trainer's optimiser on R2's exact objective (mean over questions, as the loss)."""
    correct, log_ref, log_old, p, q = _tables(policy, old, ref, questions)
    adv = _per_output(correct, *finite_group_advantage(p, q, cfg.grpo.group_size, cfg.variant, cfg.advantage))
    _exact_steps(policy, questions, adv, log_ref, log_old, cfg)
    with torch.no_grad():
        terms = exact_objective(policy.logits[questions], adv, log_ref, log_old, cfg.variant)
    return _metrics(terms, p.mean(), expected_zero_spread(p, q, cfg.grpo.group_size).mean())


def true_p_exact_steps(policy, old, ref, task, questions: torch.Tensor, cfg: Config, generator) -> IterationMetrics:
    """Factorial cell (true_p, steps, exact): M steps of the trainer's optimiser on R1's population objective.

    R3 with A(r; p_{n-1}) in place of E1's finite-G weights; it tends to R1 as M grows, as R3 tends to R2.
    """
    correct, log_ref, log_old, p, q = _tables(policy, old, ref, questions)
    adv = _per_output(correct, *population_advantage(p, q, cfg.variant, cfg.advantage))
    _exact_steps(policy, questions, adv, log_ref, log_old, cfg)
    with torch.no_grad():
        terms = exact_objective(policy.logits[questions], adv, log_ref, log_old, cfg.variant)
    return _metrics(terms, p.mean(), NAN)


def _exact_steps(policy, questions, adv, log_ref, log_old, cfg: Config) -> None:
    """M = grpo.inner_steps steps of the trainer's optimiser on the exact objective with per-output A (Q, K)."""
    from grpo_amp.grpo.trainer import _optimiser  # lazy: the trainer may come to import the rungs (registry)

    optimiser = _optimiser(policy, cfg)
    for _ in range(cfg.grpo.inner_steps):
        terms = exact_objective(policy.logits[questions], adv, log_ref, log_old, cfg.variant)
        loss = -terms["objective"].mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()


def one_group_advantage(rollout: Rollout, adv: torch.Tensor, log_old: torch.Tensor) -> torch.Tensor:
    """a(o) = sum_i [o_i = o] A_i / (G pi_old(o)): the one-group objective is sum_o pi(o) a(o). (Q, K)."""
    outputs = rollout.tokens[..., 0]                                        # (Q, G)
    G = outputs.shape[1]
    summed = torch.zeros_like(log_old).scatter_add_(1, outputs, adv.to(log_old.dtype))  # (Q, K)
    return torch.where(summed != 0, summed / (G * log_old.exp()), 0.0)    # unsampled outputs: a = 0


def one_group_argmax(policy, old, ref, task, questions: torch.Tensor, cfg: Config, generator) -> IterationMetrics:
    """R5: one sampled group per question; pi_n = the maximiser of that group's objective with the exact KL.

    J(pi) = sum_o pi(o) a(o) - beta KL(pi||pi_ref) [- beta_prev KL(pi||pi_old)] is strictly concave on
    the simplex; its stationarity condition a(o) - sum_j beta_j (log pi(o) - log target_j(o) + 1) + lambda = 0
    gives log pi = (sum_j beta_j log target_j + a) / sum_j beta_j + const: pi ∝ pi_ref exp(a/beta) (ref),
    pi_old exp(a/beta) (mirror), pi_ref^(beta/b) pi_old^(beta_prev/b) exp(a/b), b = beta + beta_prev (both).
    The sampled objective is unclipped (clip_eps is not applied): this rung is its maximiser.
    """
    v = cfg.variant
    return _one_group_maximiser(policy, old, ref, task, questions, cfg, generator,
                                lambda rewards: group_advantages(rewards, **cfg.advantage.loss_kwargs()))


def true_p_one_group_argmax(policy, old, ref, task, questions: torch.Tensor, cfg: Config, generator) -> IterationMetrics:
    """Factorial cell (true_p, argmax, one_group): R5 with A_i = A(r_i; p_{n-1}) in place of the group's A_G,i.

    The group is drawn as R5 draws it (same generator calls); a zero-spread group no longer gives pi_ref
    back: the true p's advantage is not 0 where all G rewards agree.
    """
    _, _, _, p, q = _tables(policy, old, ref, questions)
    return _one_group_maximiser(policy, old, ref, task, questions, cfg, generator,
                                true_p_advantages(p, q, cfg.variant))


def true_p_group_steps(policy, old, ref, task, questions: torch.Tensor, cfg: Config, generator) -> IterationMetrics:
    """Factorial cell (true_p, steps, one_group): the trainer's own ``grpo_update`` (R6, draw for draw) with
    A_i = A(r_i; p_{n-1}) in place of the group's A_G,i; nothing else changes (loss, optimiser, M, m)."""
    from grpo_amp.grpo.trainer import grpo_update  # lazy, as in _exact_steps

    _, _, _, p, q = _tables(policy, old, ref, questions)
    return grpo_update(policy, old, ref, task, questions, cfg, generator, advantages=true_p_advantages(p, q, cfg.variant))


def true_p_advantages(p: torch.Tensor, q: torch.Tensor, variant: VariantConfig):
    """``advantages(rewards (Q*m, G)) -> (A (Q*m, G), zero_spread (Q*m,))``: each sampled output's A(r_i; p_{n-1}).

    Rows are question-major (question j's m groups are rows j*m ... j*m + m - 1, as grpo_update reshapes).
    """
    a_plus, a_minus = population_advantage(p, q, variant)                 # (Q,) each

    def advantages(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = rewards.shape[0] // len(a_plus)
        plus, minus = a_plus.repeat_interleave(m)[:, None], a_minus.repeat_interleave(m)[:, None]  # (Q*m, 1)
        # an infinite A (eps = 0 at p_old = 0 or 1) belongs to a reward that cannot be drawn: never selected
        adv = torch.where(rewards > 0.5, plus, minus)                     # (Q*m, G)
        return adv, (rewards == rewards[:, :1]).all(dim=1)
    return advantages


def _one_group_maximiser(policy, old, ref, task, questions, cfg: Config, generator, advantages) -> IterationMetrics:
    """One sampled group per question, its advantages from ``advantages(rewards)``, and the closed-form
    maximiser of that group's objective (``one_group_argmax``'s docstring)."""
    v, g = cfg.variant, cfg.grpo
    correct, log_ref, log_old, p, q = _tables(policy, old, ref, questions)
    rollout = old.sample(questions, g.group_size, generator)               # (Q, G, 1)
    rewards = task.reward(rollout)                                         # (Q, G)
    adv, zero_spread = advantages(rewards)
    a = one_group_advantage(rollout, adv, log_old)                        # (Q, K)
    terms_kl = _kl_terms(v)
    b = sum(coef for coef, _ in terms_kl)
    targets = {"ref": log_ref, "old": log_old}
    log_pi = (sum(coef * targets[t] for coef, t in terms_kl) + a) / b
    logits = torch.log_softmax(log_pi, -1)
    _write(policy, questions, logits)
    terms = exact_objective(logits, a, log_ref, log_old, v)
    return _metrics(terms, rewards.mean(), zero_spread.double().mean())
