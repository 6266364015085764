"""GRPO success amplification in closed form (docs/theory.md, after Mroueh 2025, arXiv:2503.06639).

numpy/scipy only: no torch and nothing of ours, so every other layer can trust and import it.
Everything is vectorised over arrays of questions; the claim ids (C1..C7, E1, E4) match docs/theory.md.

    >>> from grpo_amp import theory
    >>> theory.pos_recurrence(0.2, 3, kl="ref", beta=1.0)  # rows n = 0..3
    >>> theory.fixed_points(0.2, beta=1.0)       # [FixedPoint(p=0.6813, slope=0.39, ...), ...]
    >>> theory.predicted_limit([0.2, 0.5], beta=1.0)   # array([0.6813, 1.])

Conventions: ``p`` is a probability of success (PoS); ``x = logit(p)``. Iterations run in logit
space because C3 is additive there and because a limit such as 1 - 1e-12 keeps its precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from scipy import special

Norm = Literal["mean_std", "mean_only"]
KL = Literal["ref", "mirror", "both"]
Std = Literal["population", "sample", "trl"]

NORMS = ("mean_std", "mean_only")
KLS = ("ref", "mirror", "both")
STDS = ("population", "sample")
TRL_STD = "trl"  # sample std with eps OUTSIDE the root, (r - mean)/(std + eps): TRL's GRPOTrainer (finite G only)

# Beyond this logit, float64 rounds p to exactly 1.0 (1 - expit(37) < 2**-53).
LOGIT_ONE = 37.0


# --------------------------------------------------------------------------- argument checks
def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _as_prob(name: str, p) -> np.ndarray:
    arr = np.asarray(p, dtype=float)
    bad = ~((arr >= 0.0) & (arr <= 1.0))  # catches NaN too
    if np.any(bad):
        raise ValueError(f"{name} must lie in [0, 1]; got {float(arr[bad].flat[0])!r}")
    return arr


def _check_positive(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    bad = ~(arr > 0.0)
    if np.any(bad):
        raise ValueError(f"{name} must be > 0; got {float(arr[bad].flat[0])!r}")
    return arr


def _check_eps(eps) -> float:
    if not (float(eps) >= 0.0):
        raise ValueError(f"eps must be >= 0; got {eps!r}")
    return float(eps)


def _check_group(group_size) -> int | None:
    if group_size is None:
        return None
    try:
        ok = not isinstance(group_size, bool) and int(group_size) == group_size and group_size >= 2
    except (TypeError, ValueError, OverflowError):  # inf, NaN, non-numbers
        ok = False
    if not ok:
        raise ValueError(f"group_size must be an integer >= 2 (or None for the population limit); got {group_size!r}")
    return int(group_size)


def _check_common(norm, eps, group_size, std) -> tuple[float, int | None]:
    _check_choice("norm", norm, NORMS)
    _check_choice("std", std, (*STDS, TRL_STD))
    eps, group_size = _check_eps(eps), _check_group(group_size)
    if std == "trl" and group_size is None and norm == "mean_std":
        raise ValueError("std='trl' (eps outside the root) is a finite-group advantage: give group_size")
    return eps, group_size


# --------------------------------------------------------------------------- logits
def logit(p) -> np.ndarray:
    """log(p / (1 - p)), with -inf at 0 and +inf at 1."""
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore"):
        return np.log(p) - np.log1p(-p)


def _variance_from_logit(x: np.ndarray) -> np.ndarray:
    # p(1-p) = 1 / (4 cosh^2(x/2)): exact in logit space, accurate when p is within 1e-16 of 0 or 1.
    with np.errstate(over="ignore"):
        return 0.25 / np.cosh(0.5 * x) ** 2


# --------------------------------------------------------------------------- advantage weights
def advantage_weights(p, norm: Norm = "mean_std", eps: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Population-limit weights (w+, w-) of docs/theory.md (advantages): A = w+ on a success, A = -w- on a failure."""
    eps, _ = _check_common(norm, eps, None, "population")
    p = _as_prob("p", p)
    if norm == "mean_only":
        return 1.0 - p, p.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        if eps == 0.0:
            # (1-p)/sqrt(p(1-p)) = sqrt((1-p)/p): finite w- at p = 0, w+ = inf there (and vice versa).
            return np.sqrt((1.0 - p) / p), np.sqrt(p / (1.0 - p))
        denom = np.sqrt(p * (1.0 - p) + eps)
        return (1.0 - p) / denom, p / denom


def _group_coefficients(group_size: int, norm: Norm, eps: float, std: Std) -> tuple[np.ndarray, np.ndarray]:
    """c+[k] = A_G(r=1; (k+1)/G) and c-[k] = -A_G(r=0; k/G) for k = 0..G-1 other successes (E1)."""
    G = group_size
    k = np.arange(G, dtype=float)
    q_plus, q_minus = (k + 1.0) / G, k / G

    def scale(q):
        if norm == "mean_only":
            return np.ones_like(q)
        v = q * (1.0 - q) * (G / (G - 1.0) if std in ("sample", "trl") else 1.0)
        with np.errstate(divide="ignore"):
            if std == "trl":  # TRL 1.16: (r - mean) / (sample std + eps), eps outside the root
                return 1.0 / (np.sqrt(v) + eps)
            return 1.0 / np.sqrt(v + eps)

    with np.errstate(invalid="ignore"):
        c_plus = (1.0 - q_plus) * scale(q_plus)
        c_minus = q_minus * scale(q_minus)
    # A group whose rewards are all equal has no signal: A = 0 (q = 1 for c+, q = 0 for c-).
    c_plus[-1] = 0.0
    c_minus[0] = 0.0
    return c_plus, c_minus


def finite_group_weights(p, group_size: int, norm: Norm = "mean_std", eps: float = 0.0,
                         std: Std = "population") -> tuple[np.ndarray, np.ndarray]:
    """E1: expected weights (w+_G, w-_G) with G samples and empirical group mean/std.

    std: "population" or "sample" put eps inside the root, A = (r - mean)/sqrt(var + eps); "trl" is
    TRL's GRPOTrainer, A = (r - mean)/(sample std + eps) with eps outside (TRL uses eps = 1e-4).
    """
    eps, G = _check_common(norm, eps, group_size, std)
    if G is None:
        raise ValueError("group_size must be an integer >= 2; got None")
    p = _as_prob("p", p)
    c_plus, c_minus = _group_coefficients(G, norm, eps, std)
    pmf = _binom_pmf(G - 1, p)  # (..., G): P(K = k), K ~ Bin(G-1, p)
    return pmf @ c_plus, pmf @ c_minus


def _binom_pmf(n: int, p: np.ndarray) -> np.ndarray:
    """P(K = k) for k = 0..n, K ~ Bin(n, p): shape (*p.shape, n + 1). (scipy.stats costs 0.6 s to import.)"""
    k = np.arange(n + 1, dtype=float)
    log_comb = special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
    p = np.asarray(p, dtype=float)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        pmf = np.exp(log_comb + special.xlogy(k, p) + special.xlog1py(n - k, -p))
    return pmf


def _weight_sum(p, norm, eps, group_size, std) -> np.ndarray:
    """S(p) = w+ + w- (population limit or E1's S_G)."""
    if group_size is None:
        w_plus, w_minus = advantage_weights(p, norm, eps)
    else:
        w_plus, w_minus = finite_group_weights(p, group_size, norm, eps, std)
    return w_plus + w_minus


def _weight_sum_from_logit(x, norm, eps, group_size, std) -> np.ndarray:
    """S as a function of x = logit(p), accurate for p near 0 or 1 (population mean_std)."""
    if group_size is None and norm == "mean_std":
        with np.errstate(over="ignore"):
            if eps == 0.0:
                return 2.0 * np.cosh(0.5 * x)  # 1/sqrt(p(1-p)) with p = expit(x)
            return 1.0 / np.sqrt(_variance_from_logit(x) + eps)
    return _weight_sum(special.expit(x), norm, eps, group_size, std)


def _weight_sum_derivative(p, norm, eps, group_size, std) -> np.ndarray:
    """dS/dp, used for the stability h'(p*) of a fixed point."""
    p = np.asarray(p, dtype=float)
    if norm == "mean_only" and group_size is None:
        return np.zeros_like(p)
    if group_size is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            return -0.5 * (1.0 - 2.0 * p) * (p * (1.0 - p) + eps) ** -1.5
    G = group_size
    c_plus, c_minus = _group_coefficients(G, norm, eps, std)
    c = c_plus + c_minus
    # d/dp E_{K~Bin(n,p)}[c(K)] = n E_{K~Bin(n-1,p)}[c(K+1) - c(K)], n = G - 1.
    pmf = _binom_pmf(G - 2, p)
    return (G - 1) * (pmf @ np.diff(c))


# --------------------------------------------------------------------------- C3: the recurrence
def _check_kl(kl, beta, beta_prev):
    _check_choice("kl", kl, KLS)
    beta = _check_positive("beta", beta)
    beta_prev = np.asarray(beta_prev, dtype=float)
    if kl == "both":
        beta_prev = _check_positive("beta_prev", beta_prev)
    elif np.any(~(beta_prev >= 0.0)):
        raise ValueError(f"beta_prev must be >= 0; got {float(beta_prev[~(beta_prev >= 0.0)].flat[0])!r}")
    return beta, beta_prev


def _step_logit(x_prev, x_ref, kl, beta, beta_prev, norm, eps, group_size, std):
    s = _weight_sum_from_logit(x_prev, norm, eps, group_size, std)
    # S/beta can overflow to inf for p_prev ~ 1 and small beta: p_n = 1 is then the right answer.
    with np.errstate(invalid="ignore", over="ignore"):
        if kl == "ref":
            x = x_ref + s / beta
        elif kl == "mirror":
            x = x_prev + s / beta
        else:
            x = (beta * x_ref + beta_prev * x_prev + s) / (beta + beta_prev)
    return x


def _pin_degenerate(x, x_ref, x_prev, kl):
    """p_ref (or p_prev for mirror) of exactly 0 or 1 has no mass to tilt: it stays where it is."""
    anchor = x_prev if kl == "mirror" else x_ref
    if np.all(np.isfinite(anchor)) and not np.any(np.isnan(x)):
        return x
    x = np.where(np.isneginf(anchor), -np.inf, x)
    x = np.where(np.isposinf(anchor), np.inf, x)
    return np.where(np.isnan(x), anchor, x)


def pos_step(p_prev, p_ref, kl: KL = "ref", beta=1.0, beta_prev=0.0, norm: Norm = "mean_std",
             eps: float = 0.0, group_size: int | None = None, std: Std = "population") -> np.ndarray:
    """One C3 step: p_n from p_{n-1} (``p_prev``) and p_ref. ``group_size`` uses E1's S_G."""
    eps, group_size = _check_common(norm, eps, group_size, std)
    beta, beta_prev = _check_kl(kl, beta, beta_prev)
    p_prev, p_ref = _as_prob("p_prev", p_prev), _as_prob("p_ref", p_ref)
    x_prev, x_ref = logit(p_prev), logit(p_ref)
    x = _step_logit(x_prev, x_ref, kl, beta, beta_prev, norm, eps, group_size, std)
    return special.expit(_pin_degenerate(x, x_ref, x_prev, kl))


def pos_recurrence(p_ref, n_iters: int, kl: KL = "ref", beta=1.0, beta_prev=0.0, norm: Norm = "mean_std",
                   eps: float = 0.0, group_size: int | None = None, std: Std = "population") -> np.ndarray:
    """C3 iterated from p_0 = p_ref: shape (n_iters + 1, *p_ref.shape), row 0 = p_ref."""
    if int(n_iters) != n_iters or n_iters < 0:
        raise ValueError(f"n_iters must be an integer >= 0; got {n_iters!r}")
    eps, group_size = _check_common(norm, eps, group_size, std)
    beta, beta_prev = _check_kl(kl, beta, beta_prev)
    p_ref = _as_prob("p_ref", p_ref)
    x_ref = logit(p_ref)
    out = np.empty((int(n_iters) + 1, *np.broadcast_shapes(p_ref.shape, beta.shape, beta_prev.shape)))
    out[0] = p_ref
    x = np.broadcast_to(x_ref, out.shape[1:])
    for n in range(1, int(n_iters) + 1):
        x = _pin_degenerate(_step_logit(x, x_ref, kl, beta, beta_prev, norm, eps, group_size, std), x_ref, x, kl)
        out[n] = special.expit(x)
    return out


# --------------------------------------------------------------------------- C4: fixed points
class FixedPoint(NamedTuple):
    """A fixed point p* = h(p*) of C3 under kl=ref; ``slope`` is h'(p*), attracting iff |slope| < 1."""
    p: float
    slope: float
    attracting: bool


_GRID = 1024  # logit-grid points per (p_ref, beta): spacing <= 0.04 in logit up to p = 1 - 1e-16


def _fixed_point_function(x, x_ref, beta, norm, eps, group_size, std):
    # F(x) = logit p - logit p_ref - S(p)/beta; its zeros are the fixed points of h (C4).
    return x - x_ref - _weight_sum_from_logit(x, norm, eps, group_size, std) / beta


def _s_upper_bound(norm, eps, group_size, std) -> float:
    if norm == "mean_only":
        return 1.0
    if group_size is not None:
        c_plus, c_minus = _group_coefficients(group_size, norm, eps, std)
        return float(c_plus.max() + c_minus.max())
    return np.inf if eps == 0.0 else 1.0 / np.sqrt(eps)


def fixed_points_batch(p_ref, beta, norm: Norm = "mean_std", eps: float = 0.0,
                       group_size: int | None = None, std: Std = "population"):
    """Vectorised C4 root search over many (p_ref, beta) pairs.

    Returns ``(index, p, slope)`` arrays, one entry per fixed point in (p_ref, 1], where ``index``
    points into the flattened broadcast of (p_ref, beta). docs/theory.md's C4 method: sign changes of
    F(x) = logit p - logit p_ref - S(p)/beta on a fine logit grid, then bisection in each bracket.
    p = 1 is reported (slope 0, attracting) wherever S is unbounded (eps = 0, population limit), and
    wherever F is still negative at logit LOGIT_ONE + 3 (a root so close to 1 that float64 rounds it to 1).
    """
    eps, group_size = _check_common(norm, eps, group_size, std)
    beta = _check_positive("beta", beta)
    p_ref = _as_prob("p_ref", p_ref)
    p_ref, beta = (a.ravel() for a in np.broadcast_arrays(p_ref, beta))
    inner = (p_ref > 0.0) & (p_ref < 1.0)
    x_ref = logit(np.where(inner, p_ref, 0.5))
    s_max = _s_upper_bound(norm, eps, group_size, std)
    # F > 0 beyond x_ref + s_max/beta; past LOGIT_ONE every p is 1.0 in float64 anyway.
    x_hi = np.minimum(x_ref + s_max / beta + 1.0, LOGIT_ONE + 3.0)
    t = np.linspace(0.0, 1.0, _GRID)
    xs = x_ref[:, None] + t[None, :] * (x_hi - x_ref)[:, None]  # (N, GRID)
    fs = _fixed_point_function(xs, x_ref[:, None], beta[:, None], norm, eps, group_size, std)
    sign_change = (np.sign(fs[:, :-1]) * np.sign(fs[:, 1:]) <= 0) & (fs[:, :-1] != 0)
    sign_change &= inner[:, None]
    rows, cols = np.nonzero(sign_change)
    lo, hi = xs[rows, cols], xs[rows, cols + 1]
    b, xr = beta[rows], x_ref[rows]
    f_lo = _fixed_point_function(lo, xr, b, norm, eps, group_size, std)
    for _ in range(60):  # bisection: the bracket shrinks to ~1e-18 of its width
        mid = 0.5 * (lo + hi)
        f_mid = _fixed_point_function(mid, xr, b, norm, eps, group_size, std)
        left = np.sign(f_mid) == np.sign(f_lo)
        lo, f_lo = np.where(left, mid, lo), np.where(left, f_mid, f_lo)
        hi = np.where(left, hi, mid)
    x_star = 0.5 * (lo + hi)
    p_star = special.expit(x_star)
    var = _variance_from_logit(x_star)
    ds = _weight_sum_derivative(p_star, norm, eps, group_size, std)
    with np.errstate(invalid="ignore"):
        slope = np.where(var > 0, var * ds / b, 0.0)  # h'(p) = h(1-h) S'(p)/beta, h = p at p*
    index, p_out, slope_out = [rows], [p_star], [slope]
    if np.isinf(s_max) or np.any(fs[:, -1] < 0):
        ones = np.nonzero(inner & (np.isinf(s_max) | (fs[:, -1] < 0)))[0]
        index.append(ones), p_out.append(np.ones(len(ones))), slope_out.append(np.zeros(len(ones)))
    index, p_out, slope_out = (np.concatenate(a) for a in (index, p_out, slope_out))
    order = np.lexsort((p_out, index))
    return index[order], p_out[order], slope_out[order]


def fixed_points(p_ref: float, beta: float, norm: Norm = "mean_std", eps: float = 0.0,
                 group_size: int | None = None, std: Std = "population") -> list[FixedPoint]:
    """Every C4 fixed point in (p_ref, 1] for one question (kl=ref; kl=both has the same ones)."""
    if np.ndim(p_ref) or np.ndim(beta):
        raise ValueError("fixed_points takes one question (scalar p_ref and beta); use fixed_points_batch")
    _, p, slope = fixed_points_batch(p_ref, beta, norm, eps, group_size, std)
    return [FixedPoint(float(a), float(s), bool(abs(s) < 1.0)) for a, s in zip(p, slope)]


# --------------------------------------------------------------------------- the limit from p_ref
def predicted_limit(p_ref, beta, kl: KL = "ref", beta_prev=0.0, norm: Norm = "mean_std", eps: float = 0.0,
                    group_size: int | None = None, std: Std = "population",
                    max_iters: int = 5000, tol: float = 1e-11) -> np.ndarray:
    """The limit of C3 iterated from p_ref (vectorised over p_ref, beta, beta_prev).

    This, not a root, is what a measured trajectory converges to (C4: roots can repel, and the
    first step can overshoot the upper root). Where the iteration does not settle within
    ``max_iters`` (a 2-cycle when |h'(p*)| > 1), the result is NaN.
    """
    eps, group_size = _check_common(norm, eps, group_size, std)
    beta, beta_prev = _check_kl(kl, beta, beta_prev)
    p_ref = _as_prob("p_ref", p_ref)
    shape = np.broadcast_shapes(p_ref.shape, beta.shape, beta_prev.shape)
    x_ref, b, bp = (np.broadcast_to(a, shape).ravel() for a in (logit(p_ref), beta, beta_prev))
    result = np.full(x_ref.shape, np.nan)
    x = x_ref.copy()
    active = np.arange(x.size)
    # Degenerate p_ref stays put; above LOGIT_ONE the PoS is 1.0 in float64 and only grows (S > 0).
    for _ in range(int(max_iters)):
        if active.size == 0:
            break
        xa, xr = x[active], x_ref[active]
        x_new = _pin_degenerate(_step_logit(xa, xr, kl, b[active], bp[active], norm, eps, group_size, std), xr, xa, kl)
        done_one = x_new >= LOGIT_ONE
        done = done_one | (np.abs(x_new - xa) <= tol * np.maximum(1.0, np.abs(xa))) | ~np.isfinite(x_new)
        x[active] = x_new
        result[active[done]] = special.expit(np.where(done_one[done], np.inf, x_new[done]))
        active = active[~done]
    return result.reshape(shape)


# --------------------------------------------------------------------------- E4: effective beta
def fit_effective_beta(p_ref, trajectory, kl: KL = "ref", norm: Norm = "mean_std", eps: float = 0.0,
                       beta_prev=0.0, group_size: int | None = None, std: Std = "population",
                       bounds: tuple[float, float] = (1e-3, 1e3)) -> tuple[float, float]:
    """E4: the beta whose C3 trajectory from ``p_ref`` best fits ``trajectory`` (least squares).

    ``trajectory`` has rows n = 0..N like :func:`pos_recurrence` (row 0 is ignored: it is p_ref);
    columns are questions. Returns (beta, rmse over rows 1..N and all questions).
    """
    p_ref = _as_prob("p_ref", p_ref)
    traj = _as_prob("trajectory", trajectory)
    if traj.ndim == 0 or traj.shape[0] < 2:
        raise ValueError("trajectory must have rows for iterations 0..N with N >= 1")
    if traj.shape[1:] != p_ref.shape:
        raise ValueError(f"trajectory rows have shape {traj.shape[1:]}, p_ref has {p_ref.shape}")
    n_iters = traj.shape[0] - 1
    lo, hi = (float(v) for v in bounds)
    if not (0 < lo < hi):
        raise ValueError(f"bounds must satisfy 0 < low < high; got {bounds!r}")

    def rmse(log_beta: float) -> float:
        pred = pos_recurrence(p_ref, n_iters, kl=kl, beta=float(np.exp(log_beta)), beta_prev=beta_prev,
                              norm=norm, eps=eps, group_size=group_size, std=std)
        return float(np.sqrt(np.mean((pred[1:] - traj[1:]) ** 2)))

    # RMSE in beta can have several minima: a coarse log grid first, then Brent in the best cell.
    grid = np.linspace(np.log(lo), np.log(hi), 121)
    # the whole grid in one recurrence (beta on a leading axis): the same numbers as one call per point, ~100x fewer calls
    preds = pos_recurrence(p_ref, n_iters, kl=kl, beta=np.exp(grid).reshape(-1, *([1] * p_ref.ndim)),
                           beta_prev=beta_prev, norm=norm, eps=eps, group_size=group_size, std=std)  # (N+1, grid, *Q)
    errs = np.sqrt(np.mean((preds[1:] - traj[1:, None]) ** 2, axis=tuple(i for i in range(preds.ndim) if i != 1)))
    i = int(np.argmin(errs))
    a, c = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    from scipy import optimize  # imported here: only E4 needs it

    res = optimize.minimize_scalar(rmse, bounds=(a, c), method="bounded", options={"xatol": 1e-10})
    best = (res.x, res.fun) if res.fun <= errs[i] else (grid[i], errs[i])
    return float(np.exp(best[0])), float(best[1])


# --------------------------------------------------------------------------- C2: tabular optimum
def tabular_optimum(pi_prev, pi_ref, correct, kl: KL = "ref", beta=1.0, beta_prev=0.0, norm: Norm = "mean_std",
                    eps: float = 0.0, group_size: int | None = None, std: Std = "population") -> np.ndarray:
    """C2's closed-form maximiser of E_pi[A] - beta KL(pi||pi_ref) [- beta_prev KL(pi||pi_prev)].

    ``pi_prev``, ``pi_ref``: (..., K) distributions over a finite output set; ``correct``: (..., K)
    booleans (the verifier). The advantage is docs/theory.md's, evaluated at p = PoS of ``pi_prev``
    (E1's finite-G weights when ``group_size`` is given). Returns pi_n with the same shape.
    """
    eps, group_size = _check_common(norm, eps, group_size, std)
    beta, beta_prev = _check_kl(kl, beta, beta_prev)
    pi_prev, pi_ref = np.asarray(pi_prev, float), np.asarray(pi_ref, float)
    correct = np.asarray(correct, bool)
    if pi_prev.shape != pi_ref.shape or pi_prev.shape != correct.shape:
        raise ValueError(f"pi_prev {pi_prev.shape}, pi_ref {pi_ref.shape} and correct {correct.shape} must match")
    for name, pi in (("pi_prev", pi_prev), ("pi_ref", pi_ref)):
        if np.any(pi < 0) or not np.allclose(pi.sum(-1), 1.0, atol=1e-8):
            raise ValueError(f"{name} must be a probability distribution over its last axis")
    p_prev = np.clip((pi_prev * correct).sum(-1), 0.0, 1.0)
    if group_size is None:
        w_plus, w_minus = advantage_weights(p_prev, norm, eps)
    else:
        w_plus, w_minus = finite_group_weights(p_prev, group_size, norm, eps, std)
    adv = np.where(correct, w_plus[..., None], -w_minus[..., None])  # A(q, o) depends on o via r only
    with np.errstate(divide="ignore"):
        log_ref, log_prev = np.log(pi_ref), np.log(pi_prev)
    b, bp = beta[..., None] if beta.ndim else beta, beta_prev[..., None] if beta_prev.ndim else beta_prev
    if kl == "ref":
        log_pi = log_ref + adv / b
    elif kl == "mirror":
        log_pi = log_prev + adv / b
    else:
        log_pi = (b * log_ref + bp * log_prev + adv) / (b + bp)
    return np.exp(log_pi - special.logsumexp(log_pi, axis=-1, keepdims=True))


@dataclass(frozen=True)
class Prediction:
    """What ``grpo-amp predict`` reports for one question."""
    trajectory: np.ndarray
    fixed_points: list[FixedPoint]
    limit: float


def _slope_under_both(fp: FixedPoint, beta: float, beta_prev: float) -> FixedPoint:
    """Stability of a ref fixed point under kl=both (C6).

    In logit space the both step is (beta x_ref + beta_prev x + S)/(beta + beta_prev), so its slope at
    p* is (beta_prev + beta h'(p*))/(beta + beta_prev): a convex mix of 1 and ref's h'. At p* = 1
    (1 - p_n shrinks super-exponentially) the slope stays 0.
    """
    if fp.p >= 1.0:
        return fp
    slope = (beta_prev + beta * fp.slope) / (beta + beta_prev)
    return FixedPoint(fp.p, slope, bool(abs(slope) < 1.0))


def predict(p_ref: float, beta: float, n_iters: int, kl: KL = "ref", beta_prev: float = 0.0,
            norm: Norm = "mean_std", eps: float = 0.0, group_size: int | None = None,
            std: Std = "population") -> Prediction:
    """Trajectory, fixed points (of kl=ref/both; mirror has none below 1) and the limit, for one question.

    The fixed points of kl=both are ref's, but their ``slope``/``attracting`` are the both step's.
    """
    kw = dict(norm=norm, eps=eps, group_size=group_size, std=std)
    traj = pos_recurrence(p_ref, n_iters, kl=kl, beta=beta, beta_prev=beta_prev, **kw)
    fps = [] if kl == "mirror" else fixed_points(p_ref, beta, **kw)
    if kl == "both":
        fps = [_slope_under_both(fp, float(beta), float(beta_prev)) for fp in fps]
    limit = float(predicted_limit(p_ref, beta, kl=kl, beta_prev=beta_prev, **kw))
    return Prediction(traj, fps, limit)
