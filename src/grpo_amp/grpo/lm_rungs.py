"""E5's exact rungs on the transformer: R1 and R2 with the transformer's parameters as the variable.

    space = AnswerSpace(task)                                   # every answer-shaped output, listed
    logp = space.log_probs(policy, questions)                   # (Q, K + 1): log pi(o|q), last = "other"
    metrics = transformer_population_argmax(policy, old, ref, task, questions, cfg, generator)   # R1
    metrics = transformer_finite_group_argmax(...)                                                # R2

A modarith output is at most ``answer_digits`` digits then <eos>: with two digits 1 + 10 + 100 = 111
answer-shaped outputs per question (222 where answers may start with "+": the same digit tree again
after the sign, its prefix run as a prompt one token longer). Their probabilities come from a walk down the tree of digit
prefixes: the prompt once, its 10 one-digit prefixes (``backend.branch``: each continuation becomes a
prompt of its own), then their 100 two-digit ones, so each of the 1 + 10 + 100 prefixes runs once
(110 tokens per question where teacher-forcing the 100 full strings ran 200; 3-4x faster per
objective evaluation with the lean backend, float32-rounding agreement: tests/test_lm_rungs.py). A
backend without ``branch`` (HF's, on a GPU) teacher-forces the 10^D full-length strings instead. The
next-token log-softmax is taken in float64 so that the listed masses and the rest sum to 1 to round-off.
Everything else the model can emit (a non-digit token, D digits without <eos>) is wrong and gets one
lumped outcome, "other" (its mass under pi is ``other_mass`` in the metrics; pi_ref puts ~1e-3 there).

Each iteration maximises, over all of the transformer's parameters, docs/theory.md's iteration objective
on the train questions, computed exactly on that list (no sampling):

    J(theta) = mean_q [ sum_o pi_theta(o|q) A(o) - beta KL(pi_theta || pi_ref) [- beta_prev KL(pi_theta || pi_old)] ]

with A the population advantage at p_old (R1) or E1's finite-G expectation (R2,
``grpo.rungs.finite_group_advantage``), and the KL the sequence KL over the K + 1 outcomes (exact
on the listed outputs; on "other" it is the KL of the lumped mass, a lower bound on the sequence KL
there). The maximiser is found by L-BFGS (strong Wolfe). Unlike the table the problem is not
concave, so there is no certificate: the optimiser stops once no train question's p moved by more
than ``grpo.argmax_tol`` over the last CHUNK iterations, or after ``grpo.argmax_max_iter``
iterations. What it reached is in the metrics: ``argmax_iters``, ``argmax_tol_reached`` (that largest
move of p over the last chunk) and ``argmax_grad_norm`` (the objective's gradient norm at the end).
Their gap to C3 (R1) and C3 with E1's S_G (R2) is what the parametrisation costs, with no sampling
and no optimiser-schedule error in it.
"""

from __future__ import annotations

import dataclasses

import itertools

import torch

from grpo_amp.config import Config
from grpo_amp.schema import IterationMetrics
from grpo_amp.grpo.rungs import (NAN, ArgmaxError, _kl_terms, _metrics, exact_objective, expected_zero_spread,
                                 finite_group_advantage, maximise, population_advantage)

CHUNK = 10  # L-BFGS iterations between two looks at how far p still moves


class AnswerSpace:
    """Every answer-shaped output of a modarith task (["+"] then k = 0..D digits then <eos>) and its value."""

    def __init__(self, task):
        D = task.cfg.answer_digits
        self.task, self.D = task, D
        self.plus_id = getattr(task, "plus_id", None)      # a task whose answers may start with "+"
        signs = ("", "+") if self.plus_id is not None else ("",)
        self.T0 = D + 1                                    # tokens of an unsigned output: digits, <eos>
        self.T = len(signs) - 1 + self.T0                  # the longest output: ["+"], digits, <eos>
        digit_ids = task.tokenizer.convert_tokens_to_ids(list("0123456789"))
        eos, pad = task.eos_id, task.pad_id
        outputs = [digits for k in range(D + 1) for digits in itertools.product(range(10), repeat=k)]
        self.K0 = len(outputs)                             # unsigned outputs; the signed ones follow in the same order
        self.K = self.K0 * len(signs)
        tokens = torch.full((self.K, self.T), pad, dtype=torch.long)     # (K, T): ["+"], digits, <eos>, pad
        mask = torch.zeros((self.K, self.T), dtype=torch.bool)
        src = torch.zeros(self.K0, dtype=torch.long)   # the full-length digit path an unsigned output is a prefix of
        value = torch.full((self.K,), -1, dtype=torch.long)  # -1: no digits (["+"] <eos>), never correct
        self.labels = []
        for s, sign in enumerate(signs):
            for j, digits in enumerate(outputs):
                row, seq = s * self.K0 + j, ([self.plus_id] if sign else []) + [digit_ids[d] for d in digits] + [eos]
                tokens[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                mask[row, : len(seq)] = True
                if digits:
                    value[row] = int("".join(map(str, digits)))
                self.labels.append(sign + "".join(map(str, digits)) + "<eos>")
        for j, digits in enumerate(outputs):
            src[j] = sum(d * 10 ** (D - 1 - i) for i, d in enumerate(digits))
        self.labels.append("other")
        self.tokens, self.mask, self.src, self.value = tokens, mask, src, value
        self.digit_tokens = tokens[: self.K0, : self.T0]   # (K0, T0): what the digit tree below a prefix lists
        self.digit_ids = digit_ids
        # the 10^D full-length digit strings, <eos> last: teacher forcing them visits every prefix
        full = torch.tensor([[digit_ids[d] for d in digits] + [eos]
                             for digits in itertools.product(range(10), repeat=D)], dtype=torch.long)  # (F, T0)
        self.full = full

    def correct(self, questions: torch.Tensor) -> torch.Tensor:
        """(Q, K + 1) bool: the verifier on the list ("other" is never correct)."""
        target = self.task.values[questions.cpu()][:, None]                  # (Q, 1)
        listed = self.value[None, :] == target                               # (Q, K)
        return torch.cat([listed, torch.zeros(len(questions), 1, dtype=torch.bool)], 1)

    def log_probs(self, policy, questions: torch.Tensor) -> torch.Tensor:
        """log pi(o|q) for the K listed outputs and "other", (Q, K + 1) float64 (with gradient)."""
        questions = questions.to(policy.device)
        backend = policy.backend()
        prompts = policy.prompt_ids[questions]                                   # (Q, P)
        first, state = backend.prompt(prompts)                                   # (Q, V)
        token_logp = self._digit_token_logp(backend, first, state)              # (Q, K0, T0)
        if self.plus_id is not None:  # the signed outputs: log pi("+"|q), then the same digit tree after "+"
            plus = torch.full((len(prompts), 1), self.plus_id, dtype=prompts.dtype, device=prompts.device)
            after_plus, plus_state = backend.prompt(torch.cat([prompts, plus], 1))
            log_plus = first.double().log_softmax(-1)[:, self.plus_id]           # (Q,)
            signed = self._digit_token_logp(backend, after_plus, plus_state)    # (Q, K0, T0)
            unsigned = torch.nn.functional.pad(token_logp, (0, 1))               # (Q, K0, T): nothing after <eos>
            signed = torch.cat([log_plus[:, None, None].expand(-1, self.K0, 1), signed], -1)  # (Q, K0, T)
            token_logp = torch.cat([unsigned, signed], 1)                       # (Q, K, T)
        mask = self.mask.to(token_logp.device)
        logp = torch.where(mask, token_logp, 0.0).sum(-1)                        # (Q, K)
        listed = torch.logsumexp(logp, -1, keepdim=True)                         # (Q, 1): log of the listed mass
        log_other = torch.log(-torch.expm1(listed.clamp(max=0.0)))               # log(1 - listed mass)
        return torch.cat([logp, log_other], 1).cpu()

    def _digit_token_logp(self, backend, first, state) -> torch.Tensor:
        """(Q, K0, T0) token log-probs of the unsigned outputs after a prompt (first: its next-token logits)."""
        if getattr(backend, "branch", None) is not None:
            logq = self._tree_log_softmax(backend, first, state)                 # [(Q, 10^i, V)] for i = 0..D
            index = self._tree_index(first.shape[-1])
            return torch.stack([logq[i].flatten(1)[:, index[i].to(first.device)] for i in range(self.T0)], -1)
        return self._flat_token_logp(backend, first, state)  # a backend without branch (HF's): 10^D strings forced

    def _tree_index(self, V: int) -> list[torch.Tensor]:
        """Per level i = 0..D: each listed output's entry in level i's flattened (10^i prefixes x V) log-softmax:
        the prefix of its first i digits, and its token at position i (pad where the output is shorter: masked)."""
        if getattr(self, "_tree_index_of", (None,))[0] != V:
            digits = (self.src[:, None] // 10 ** torch.arange(self.D - 1, -1, -1)[None]) % 10  # (K, D): src's digits
            index = []
            for i in range(self.T0):
                prefix = (digits[:, :i] * 10 ** torch.arange(i - 1, -1, -1)[None]).sum(-1)   # (K,): 0 at i = 0
                index.append(prefix * V + self.digit_tokens[:, i])
            self._tree_index_of = (V, index)
        return self._tree_index_of[1]

    def _tree_log_softmax(self, backend, first, state) -> list[torch.Tensor]:
        """log pi(. | q, d_1..d_i) for every prefix of i digits, i = 0..D: each prefix runs once (backend.branch)."""
        Q, V = first.shape
        digit_ids = torch.tensor(self.digit_ids, device=first.device)
        levels = [first[:, None]]                                                # (Q, 1, V)
        for i in range(self.D):
            n = Q * 10 ** i                                                      # the prefixes of i digits, as prompts
            children = digit_ids[None].expand(n, 10)                             # (n, 10)
            if i < self.D - 1:
                logits, state = backend.branch(state, children)                  # (n, 10, V)
            else:
                logits = backend.extend(state, children[..., None])[:, :, 0]     # the last level: no state after it
            levels.append(logits.reshape(Q, 10 ** (i + 1), V))
        return [lv.double().log_softmax(-1) for lv in levels]                    # float64: the masses sum to 1

    def _flat_token_logp(self, backend, first, state) -> torch.Tensor:
        """(Q, K, T) token log-probs from the 10^D full-length digit strings, teacher-forced (a shorter answer's path
        is a prefix of one of them)."""
        Q, F = first.shape[0], len(self.full)
        full = self.full.to(first.device)
        rest = backend.extend(state, full[None, :, :-1].expand(Q, F, self.T0 - 1))  # (Q, F, T0-1, V)
        logits = torch.cat([first[:, None, None].expand(Q, F, 1, first.shape[-1]), rest], 2)  # (Q, F, T, V)
        logq = logits.double().log_softmax(-1)                                  # float64: the masses sum to 1
        src, tokens = (x.to(first.device) for x in (self.src, self.digit_tokens))
        return logq[:, src].gather(-1, tokens[None, ..., None].expand(Q, -1, -1, 1)).squeeze(-1)  # (Q, K0, T0)


def _space(task) -> AnswerSpace:
    if getattr(task, "_answer_space", None) is None:
        task._answer_space = AnswerSpace(task)  # built once per task: the list never changes
    return task._answer_space


def _argmax(policy, space: AnswerSpace, questions, adv, log_ref, log_old, cfg: Config):
    """L-BFGS on the transformer's parameters; returns (final terms, iterations, dpos reached, grad norm)."""
    v, g = cfg.variant, cfg.grpo
    b = sum(coef for coef, _ in _kl_terms(v))
    correct = space.correct(questions)
    params = [p for p in policy.parameters() if p.requires_grad]

    def terms():
        return exact_objective(space.log_probs(policy, questions), adv, log_ref, log_old, v)

    def closure():
        lbfgs.zero_grad()
        loss = -terms()["objective"].mean() / b  # per unit of KL strength, as the table's R1
        loss.backward()
        return loss

    def pos():
        with torch.no_grad():
            return (space.log_probs(policy, questions).exp() * correct).sum(-1)  # (Q,)

    lbfgs = torch.optim.LBFGS(params, lr=1.0, max_iter=CHUNK, max_eval=2 * CHUNK, history_size=20,
                              tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe")
    p_prev, iters, reached = pos(), 0, float("inf")
    while iters < g.argmax_max_iter:
        asked = lbfgs.param_groups[0]["max_iter"] = min(CHUNK, g.argmax_max_iter - iters)
        before = lbfgs.state[params[0]].get("n_iter", 0)
        lbfgs.step(closure)
        # the iterations really taken (a chunk ends early on a non-descent direction or its evaluation budget)
        taken = lbfgs.state[params[0]]["n_iter"] - before
        iters += max(taken, 1)
        p_now = pos()
        reached = float((p_now - p_prev).abs().max())
        p_prev = p_now
        if taken < asked:
            lbfgs.state.clear()  # stalled: a fresh curvature history (steepest descent first), not "converged"
        elif reached <= g.argmax_tol:
            break
    for p in params:
        p.grad = None
    out = terms()
    (-out["objective"].mean() / b).backward()
    grad_norm = float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params)))
    for p in params:
        p.grad = None
    return {k: t.detach() for k, t in out.items()}, iters, reached, grad_norm


def _rung(policy, old, ref, task, questions, cfg: Config, finite_g: bool) -> IterationMetrics:
    v, g = cfg.variant, cfg.grpo
    space = _space(task)
    with torch.no_grad():
        log_old = space.log_probs(old, questions)                                # (Q, K + 1)
        log_ref = space.log_probs(ref, questions)
    correct = space.correct(questions)
    pi_old = log_old.exp()
    p, q = (pi_old * correct).sum(-1), (pi_old * ~correct).sum(-1)              # (Q,): 1 - p on its own set
    a_plus, a_minus = finite_group_advantage(p, q, g.group_size, v) if finite_g else population_advantage(p, q, v)
    adv = torch.where(correct, a_plus[:, None], a_minus[:, None])                # (Q, K + 1)
    terms, iters, reached, grad_norm = _argmax(policy, space, questions, adv, log_ref, log_old, cfg)
    zero_spread = expected_zero_spread(p, q, g.group_size).mean() if finite_g else NAN
    with torch.no_grad():
        other = float(space.log_probs(policy, questions)[:, -1].exp().mean())
    return dataclasses.replace(_metrics(terms, p.mean(), zero_spread), argmax_iters=iters, argmax_tol_reached=reached,
                               argmax_grad_norm=grad_norm, objective_deficit=_deficit(terms, adv, log_ref, log_old, cfg),
                               other_mass=other)


def _deficit(terms: dict, adv, log_ref, log_old, cfg: Config) -> float:
    """mean_q (J_table*(q) - J(theta, q)) >= 0: how far below the unconstrained maximum the transformer stopped.

    J_table* is the same objective on the same K + 1 outcomes maximised by a free table (the tabular R1/R2
    optimiser, certified to grpo.rungs' own tolerance): optimisation shortfall and what the shared
    parameters cannot represent, together, in the objective's units.
    """
    try:
        z = maximise(adv, log_ref, log_old, cfg.variant, 1e-6, 500, "table")
    except ArgmaxError:
        return NAN
    best = exact_objective(z, adv, log_ref, log_old, cfg.variant)["objective"]
    return float((best - terms["objective"]).mean())


def transformer_population_argmax(policy, old, ref, task, questions: torch.Tensor, cfg: Config, generator) -> IterationMetrics:
    """R1 on the transformer: the exact population objective, maximised over the model's parameters."""
    return _rung(policy, old, ref, task, questions, cfg, finite_g=False)


def transformer_finite_group_argmax(policy, old, ref, task, questions: torch.Tensor, cfg: Config, generator) -> IterationMetrics:
    """R2 on the transformer: the exact expected finite-G objective (E1's weights), maximised over the parameters."""
    return _rung(policy, old, ref, task, questions, cfg, finite_g=True)
