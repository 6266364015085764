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

import functools
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from scipy import special

Norm = Literal["mean_std", "mean_only", "rloo"]
KL = Literal["ref", "mirror", "both"]
Std = Literal["population", "sample", "trl"]

NORMS = ("mean_std", "mean_only")  # the paper's two (C5); E6 adds rloo
ESTIMATOR_NORMS = (*NORMS, "rloo")  # rloo: A_i = r_i - mean of the other G - 1 (finite G only)
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


@dataclass(frozen=True)
class Advantage:
    """One advantage estimator of the GRPO family (E1, E6), checked and hashable.

    norm: mean_std (r - mean)/scale, mean_only r - mean (Dr. GRPO), rloo r_i - mean of the others.
    std: population or sample (Bessel, as torch.std) group std; eps_inside: sqrt(v + eps) (the
    paper's) or sqrt(v) + eps (TRL's 1e-4, verl's 1e-6). batch_std: sigma_b replaces the group std
    under mean_std (TRL scale_rewards="batch"). dynamic_sampling: groups with equal rewards are
    redrawn (DAPO): S^D = S_G / Z, Z = 1 - p^G - (1-p)^G. pass_k: the reward of each k-subset is its
    best member's, normalised over the C(G, k) subsets; a response gets the mean over its subsets.
    """
    norm: str = "mean_std"
    eps: float = 0.0
    group_size: int | None = None
    std: str = "population"
    eps_inside: bool = True
    dynamic_sampling: bool = False
    batch_std: float | None = None
    pass_k: int | None = None


def _check_common(norm, eps, group_size, std, eps_inside=True, dynamic_sampling=False, batch_std=None,
                  pass_k=None) -> Advantage:
    _check_choice("norm", norm, ESTIMATOR_NORMS)
    _check_choice("std", std, (*STDS, TRL_STD))
    eps, group_size = _check_eps(eps), _check_group(group_size)
    if std == TRL_STD:  # the old spelling of TRL's advantage: sample std, eps outside the root
        if norm == "mean_std" and group_size is None:
            raise ValueError("std='trl' (eps outside the root) is a finite-group advantage: give group_size")
        std, eps_inside = "sample", False
    if not isinstance(eps_inside, (bool, np.bool_)):
        raise ValueError(f"eps_inside must be True or False; got {eps_inside!r}")
    if not isinstance(dynamic_sampling, (bool, np.bool_)):
        raise ValueError(f"dynamic_sampling must be True or False; got {dynamic_sampling!r}")
    if dynamic_sampling and group_size is None:
        raise ValueError("dynamic_sampling needs a finite group: give group_size >= 2")
    if norm == "rloo" and group_size is None:
        norm = "mean_only"  # the leave-one-out baseline is the population mean in the limit
    if batch_std is not None:
        # sigma_b = 0 (every question of the batch at p = 0 or 1: R2's batch run gets there) is fine while
        # eps keeps the denominator positive, as TRL's 1e-4 does
        if not (float(batch_std) >= 0.0 and np.isfinite(float(batch_std))) or (float(batch_std) == 0.0 and eps == 0.0):
            raise ValueError(f"batch_std must be a finite number > 0, or 0 with eps > 0 (or None); got {batch_std!r}")
        if norm != "mean_std":
            raise ValueError(f"batch_std replaces the group std of norm='mean_std'; got norm={norm!r}")
        batch_std = float(batch_std)
    if pass_k is not None:
        if group_size is None:
            raise ValueError("pass_k needs a finite group: give group_size")
        ok = not isinstance(pass_k, bool) and int(pass_k) == pass_k and 1 <= pass_k < group_size
        if not ok:
            raise ValueError(f"pass_k must be an integer with 1 <= pass_k < group_size ({group_size}); got {pass_k!r}")
        if norm == "rloo" or batch_std is not None or std != "population":
            raise ValueError("pass_k normalises over the C(G, k) subsets: use norm mean_std or mean_only, "
                             f"std='population' and no batch_std; got norm={norm!r}, std={std!r}")
        pass_k = int(pass_k)
    return Advantage(norm, eps, group_size, std, bool(eps_inside), bool(dynamic_sampling), batch_std, pass_k)


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
def _denominator(v, a: Advantage):
    """What the advantage divides r - mean by, from the variance v (population limit or group)."""
    if a.batch_std is not None:
        v = a.batch_std ** 2  # TRL scale_rewards="batch": one std for the whole batch
    if a.eps_inside:
        return np.sqrt(v + a.eps)  # the paper's sqrt(p(1-p) + eps)
    return np.sqrt(v) + a.eps  # TRL (1e-4) and verl (1e-6): eps outside the root


def _population_scale(v, a: Advantage):
    with np.errstate(divide="ignore"):
        return 1.0 / _denominator(v, a)


def advantage_weights(p, norm: Norm = "mean_std", eps: float = 0.0, *, eps_inside: bool = True,
                      batch_std: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Population-limit weights (w+, w-) of docs/theory.md (advantages): A = w+ on a success, A = -w- on a failure."""
    a = _check_common(norm, eps, None, "population", eps_inside, batch_std=batch_std)
    p = _as_prob("p", p)
    if a.norm == "mean_only":
        return 1.0 - p, p.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        if a.eps == 0.0 and a.batch_std is None:
            # (1-p)/sqrt(p(1-p)) = sqrt((1-p)/p): finite w- at p = 0, w+ = inf there (and vice versa).
            return np.sqrt((1.0 - p) / p), np.sqrt(p / (1.0 - p))
        denom = _denominator(p * (1.0 - p), a)
        return (1.0 - p) / denom, p / denom


@functools.lru_cache(maxsize=256)
def _group_coefficients_cached(a: Advantage) -> tuple[np.ndarray, np.ndarray]:
    G = a.group_size
    k = np.arange(G, dtype=float)  # K: successes among the other G - 1 members
    if a.pass_k is not None:
        c_plus, c_minus = _pass_k_coefficients(G, a.pass_k, a)
    elif a.norm == "rloo":
        # A_i = r_i - K/(G-1) (verl's rloo, Kool et al. 2019): the other members' mean as baseline
        c_plus, c_minus = 1.0 - k / (G - 1.0), k / (G - 1.0)
    else:
        q_plus, q_minus = (k + 1.0) / G, k / G  # the group mean with r_i = 1 or 0

        def scale(q):
            if a.norm == "mean_only":
                return np.ones_like(q)
            return _population_scale(q * (1.0 - q) * (G / (G - 1.0) if a.std == "sample" else 1.0), a)

        with np.errstate(invalid="ignore"):
            c_plus = (1.0 - q_plus) * scale(q_plus)
            c_minus = q_minus * scale(q_minus)
    # A group whose rewards are all equal has no signal: A = 0 (K = G-1 for c+, K = 0 for c-).
    c_plus[-1] = 0.0
    c_minus[0] = 0.0
    c_plus.flags.writeable = c_minus.flags.writeable = False
    return c_plus, c_minus


def _group_coefficients(a: Advantage) -> tuple[np.ndarray, np.ndarray]:
    """c+[k] = A_G(r=1, K=k) and c-[k] = -A_G(r=0, K=k) for k = 0..G-1 other successes (E1, E6)."""
    return _group_coefficients_cached(a)


def _pass_k_coefficients(G: int, k: int, a: Advantage) -> tuple[np.ndarray, np.ndarray]:
    """pass@k (E6): subset reward R_s = max over a k-subset; A_s = (R_s - mean_s R)[/ std_s R] over all
    C(G, k) subsets (population std); a response's A is the mean of A_s over the subsets holding it.

    With n = G - N_pos failures: mean_s R = 1 - C(n, k)/C(G, k); a success sits only in R_s = 1
    subsets; a failure's subsets are all-failure (R_s = 0) with share C(n-1, k-1)/C(G-1, k-1).
    """
    K = np.arange(G)
    out = []
    for r in (1, 0):
        n_fail = G - (K + r)                                       # failures in the group
        r_bar = 1.0 - special.comb(n_fail, k) / special.comb(G, k)  # mean subset reward
        if r == 1:
            mean_own = np.ones(G)
        else:
            mean_own = 1.0 - special.comb(n_fail - 1, k - 1) / special.comb(G - 1, k - 1)
        centred = mean_own - r_bar
        if a.norm == "mean_only":
            adv = centred
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                adv = centred * _population_scale(r_bar * (1.0 - r_bar), a)
            adv = np.where(r_bar * (1.0 - r_bar) > 0, adv, 0.0)  # all subsets equal: no signal
        out.append(adv if r == 1 else -adv)
    return out[0].astype(float), out[1].astype(float)


def _zero_spread_complement(p, q=None):
    """Z = 1 - p^G - (1-p)^G per G (a function of G): accurate at both ends via log1p/expm1."""
    p = np.asarray(p, dtype=float)
    q = 1.0 - p if q is None else np.asarray(q, dtype=float)

    def z(G):
        hi, lo = np.maximum(p, q), np.minimum(p, q)
        with np.errstate(divide="ignore"):
            return -np.expm1(G * np.log(hi)) - lo ** G
    return z


def finite_group_weights(p, group_size: int, norm: Norm = "mean_std", eps: float = 0.0,
                         std: Std = "population", *, eps_inside: bool = True, dynamic_sampling: bool = False,
                         batch_std: float | None = None, pass_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """E1/E6: expected weights (w+_G, w-_G) with G samples and the estimator's own advantage.

    std: "population" or "sample" group std; eps_inside=True divides by sqrt(var + eps) (the paper's),
    False by sqrt(var) + eps (TRL 1e-4, verl 1e-6); std="trl" is the old name of sample + eps outside.
    dynamic_sampling divides both weights by Z(p) = 1 - p^G - (1-p)^G (the groups kept have spread);
    at p = 0 or 1 no group is ever kept and the weights are inf. See :class:`Advantage`.
    """
    a = _check_common(norm, eps, group_size, std, eps_inside, dynamic_sampling, batch_std, pass_k)
    if a.group_size is None:
        raise ValueError("group_size must be an integer >= 2; got None")
    p = _as_prob("p", p)
    return _finite_weights(p, a)


def _finite_weights(p, a: Advantage, z=None):
    c_plus, c_minus = _group_coefficients(a)
    pmf = _binom_pmf(a.group_size - 1, p)  # (..., G): P(K = k), K ~ Bin(G-1, p)
    w_plus, w_minus = pmf @ c_plus, pmf @ c_minus
    if a.dynamic_sampling:
        z = _zero_spread_complement(p)(a.group_size) if z is None else z
        with np.errstate(divide="ignore", invalid="ignore"):
            # Z = 0 (p = 0 or 1): no group is ever kept, the redraws never end: both weights inf
            w_plus, w_minus = (np.where(z > 0, w / z, np.inf) for w in (w_plus, w_minus))
    return w_plus, w_minus


@functools.lru_cache(maxsize=None)
def _log_comb(n: int) -> np.ndarray:
    """log C(n, k) for k = 0..n (read-only: cached)."""
    k = np.arange(n + 1, dtype=float)
    out = special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
    out.flags.writeable = False
    return out


def _binom_pmf(n: int, p: np.ndarray) -> np.ndarray:
    """P(K = k) for k = 0..n, K ~ Bin(n, p): shape (*p.shape, n + 1). (scipy.stats costs 0.6 s to import.)

    xlogy(k, p) is k * log(p) (0 at k = 0): one log per p, times k, gives its bits with n + 1 times fewer
    logs (E4's fits call this on 121 betas x questions per step: 9.7 of compare's 47 s before).
    """
    k = np.arange(n + 1, dtype=float)
    p = np.asarray(p, dtype=float)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p, log_q = special.xlogy(1.0, p), special.xlog1py(1.0, -p)  # scipy's own log and log1p, those xlogy and xlog1py use
        k_log_p, rest_log_q = k * log_p, (n - k) * log_q
        if not (np.isfinite(log_p).all() and np.isfinite(log_q).all()):  # p = 0 or 1 (0 * -inf), or nan
            keep = ~np.isnan(p)  # xlogy(0, y) = 0 unless y is nan
            k_log_p = np.where((k == 0) & keep, 0.0, k_log_p)
            rest_log_q = np.where((k == n) & keep, 0.0, rest_log_q)
        pmf = np.exp(_log_comb(n) + k_log_p + rest_log_q)
    return pmf


def _weight_sum(p, a: Advantage) -> np.ndarray:
    """S(p) = w+ + w- (population limit or E1/E6's S_G)."""
    if a.group_size is None:
        w_plus, w_minus = advantage_weights(p, a.norm, a.eps, eps_inside=a.eps_inside, batch_std=a.batch_std)
    else:
        w_plus, w_minus = _finite_weights(np.asarray(p, dtype=float), a)
    return w_plus + w_minus


def _weight_sum_from_logit(x, a: Advantage) -> np.ndarray:
    """S as a function of x = logit(p), accurate for p near 0 or 1 (population mean_std, dynamic sampling)."""
    if a.group_size is None and a.norm == "mean_std" and a.batch_std is None:
        with np.errstate(over="ignore"):
            if a.eps == 0.0:
                return 2.0 * np.cosh(0.5 * x)  # 1/sqrt(p(1-p)) with p = expit(x)
            return _population_scale(_variance_from_logit(x), a)
    if a.dynamic_sampling:
        # Z from log p and log(1 - p) in logit space: 1 - p is 1e-17 where S^D matters most
        x = np.asarray(x, dtype=float)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            log_p, log_q = -np.logaddexp(0.0, -x), -np.logaddexp(0.0, x)
            hi, lo = np.maximum(log_p, log_q), np.minimum(log_p, log_q)
            z = -np.expm1(a.group_size * hi) - np.exp(a.group_size * lo)
        w_plus, w_minus = _finite_weights(special.expit(x), a, z=z)
        return w_plus + w_minus
    return _weight_sum(special.expit(x), a)


def _weight_sum_derivative(p, a: Advantage) -> np.ndarray:
    """dS/dp, used for the stability h'(p*) of a fixed point."""
    p = np.asarray(p, dtype=float)
    if a.norm == "mean_only" and a.group_size is None:
        return np.zeros_like(p)
    if a.group_size is None:
        if a.batch_std is not None:
            return np.zeros_like(p)  # S = 1/(sigma_b + eps): a constant
        with np.errstate(divide="ignore", invalid="ignore"):
            v = p * (1.0 - p)
            if a.eps_inside:
                return -0.5 * (1.0 - 2.0 * p) * (v + a.eps) ** -1.5
            return -0.5 * (1.0 - 2.0 * p) / np.sqrt(v) / (np.sqrt(v) + a.eps) ** 2
    G = a.group_size
    c_plus, c_minus = _group_coefficients(a)
    c = c_plus + c_minus
    # d/dp E_{K~Bin(n,p)}[c(K)] = n E_{K~Bin(n-1,p)}[c(K+1) - c(K)], n = G - 1.
    pmf = _binom_pmf(G - 2, p)
    ds = (G - 1) * (pmf @ np.diff(c))
    if not a.dynamic_sampling:
        return ds
    s = _binom_pmf(G - 1, p) @ c
    z = _zero_spread_complement(p)(G)
    dz = G * ((1.0 - p) ** (G - 1) - p ** (G - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return ds / z - s * dz / z ** 2


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


def _step_logit(x_prev, x_ref, kl, beta, beta_prev, a: Advantage):
    s = _weight_sum_from_logit(x_prev, a)
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
             eps: float = 0.0, group_size: int | None = None, std: Std = "population", *,
             eps_inside: bool = True, dynamic_sampling: bool = False, batch_std: float | None = None,
             pass_k: int | None = None) -> np.ndarray:
    """One C3 step: p_n from p_{n-1} (``p_prev``) and p_ref. ``group_size`` uses E1/E6's S_G (see
    :class:`Advantage` for the estimator's keywords)."""
    a = _check_common(norm, eps, group_size, std, eps_inside, dynamic_sampling, batch_std, pass_k)
    beta, beta_prev = _check_kl(kl, beta, beta_prev)
    p_prev, p_ref = _as_prob("p_prev", p_prev), _as_prob("p_ref", p_ref)
    x_prev, x_ref = logit(p_prev), logit(p_ref)
    x = _step_logit(x_prev, x_ref, kl, beta, beta_prev, a)
    return special.expit(_pin_degenerate(x, x_ref, x_prev, kl))


def pos_recurrence(p_ref, n_iters: int, kl: KL = "ref", beta=1.0, beta_prev=0.0, norm: Norm = "mean_std",
                   eps: float = 0.0, group_size: int | None = None, std: Std = "population", *,
                   eps_inside: bool = True, dynamic_sampling: bool = False, batch_std: float | None = None,
                   pass_k: int | None = None) -> np.ndarray:
    """C3 iterated from p_0 = p_ref: shape (n_iters + 1, *p_ref.shape), row 0 = p_ref."""
    if int(n_iters) != n_iters or n_iters < 0:
        raise ValueError(f"n_iters must be an integer >= 0; got {n_iters!r}")
    a = _check_common(norm, eps, group_size, std, eps_inside, dynamic_sampling, batch_std, pass_k)
    beta, beta_prev = _check_kl(kl, beta, beta_prev)
    p_ref = _as_prob("p_ref", p_ref)
    x_ref = logit(p_ref)
    out = np.empty((int(n_iters) + 1, *np.broadcast_shapes(p_ref.shape, beta.shape, beta_prev.shape)))
    out[0] = p_ref
    x = np.broadcast_to(x_ref, out.shape[1:])
    for n in range(1, int(n_iters) + 1):
        x = _pin_degenerate(_step_logit(x, x_ref, kl, beta, beta_prev, a), x_ref, x, kl)
        out[n] = special.expit(x)
    return out


# --------------------------------------------------------------------------- C4: fixed points
class FixedPoint(NamedTuple):
    """A fixed point p* = h(p*) of C3 under kl=ref; ``slope`` is h'(p*), attracting iff |slope| < 1."""
    p: float
    slope: float
    attracting: bool


_GRID = 1024  # logit-grid points per (p_ref, beta): spacing <= 0.04 in logit up to p = 1 - 1e-16


def _fixed_point_function(x, x_ref, beta, a: Advantage):
    # F(x) = logit p - logit p_ref - S(p)/beta; its zeros are the fixed points of h (C4).
    return x - x_ref - _weight_sum_from_logit(x, a) / beta


def _s_upper_bound(a: Advantage) -> float:
    if a.dynamic_sampling:
        return np.inf  # S^D = S_G/Z grows like 1/(1-p) near 1 (E6): p = 1 attracts
    if a.norm == "mean_only" and a.pass_k is None:
        return 1.0  # S_G = (G-1)/G <= 1
    if a.group_size is not None:
        c_plus, c_minus = _group_coefficients(a)
        return float(c_plus.max() + c_minus.max())
    if a.batch_std is not None or a.eps > 0.0:
        return float(_population_scale(0.0, a))  # v = 0 (batch_std replaces v anyway)
    return np.inf


def fixed_points_batch(p_ref, beta, norm: Norm = "mean_std", eps: float = 0.0,
                       group_size: int | None = None, std: Std = "population", *, eps_inside: bool = True,
                       dynamic_sampling: bool = False, batch_std: float | None = None, pass_k: int | None = None):
    """Vectorised C4 root search over many (p_ref, beta) pairs.

    Returns ``(index, p, slope)`` arrays, one entry per fixed point in (p_ref, 1], where ``index``
    points into the flattened broadcast of (p_ref, beta). docs/theory.md's C4 method: sign changes of
    F(x) = logit p - logit p_ref - S(p)/beta on a fine logit grid, then bisection in each bracket.
    p = 1 is reported (slope 0, attracting) wherever S is unbounded (eps = 0, population limit; dynamic
    sampling at any G, whose S^D grows like 1/(1-p)), and
    wherever F is still negative at logit LOGIT_ONE + 3 (a root so close to 1 that float64 rounds it to 1).
    """
    a = _check_common(norm, eps, group_size, std, eps_inside, dynamic_sampling, batch_std, pass_k)
    beta = _check_positive("beta", beta)
    p_ref = _as_prob("p_ref", p_ref)
    p_ref, beta = (a.ravel() for a in np.broadcast_arrays(p_ref, beta))
    inner = (p_ref > 0.0) & (p_ref < 1.0)
    x_ref = logit(np.where(inner, p_ref, 0.5))
    s_max = _s_upper_bound(a)
    # F > 0 beyond x_ref + s_max/beta; past LOGIT_ONE every p is 1.0 in float64 anyway.
    x_hi = np.minimum(x_ref + s_max / beta + 1.0, LOGIT_ONE + 3.0)
    t = np.linspace(0.0, 1.0, _GRID)
    xs = x_ref[:, None] + t[None, :] * (x_hi - x_ref)[:, None]  # (N, GRID)
    fs = _fixed_point_function(xs, x_ref[:, None], beta[:, None], a)
    sign_change = (np.sign(fs[:, :-1]) * np.sign(fs[:, 1:]) <= 0) & (fs[:, :-1] != 0)
    sign_change &= inner[:, None]
    rows, cols = np.nonzero(sign_change)
    lo, hi = xs[rows, cols], xs[rows, cols + 1]
    b, xr = beta[rows], x_ref[rows]
    f_lo = _fixed_point_function(lo, xr, b, a)
    for _ in range(60):  # bisection: the bracket shrinks to ~1e-18 of its width
        mid = 0.5 * (lo + hi)
        f_mid = _fixed_point_function(mid, xr, b, a)
        left = np.sign(f_mid) == np.sign(f_lo)
        lo, f_lo = np.where(left, mid, lo), np.where(left, f_mid, f_lo)
        hi = np.where(left, hi, mid)
    x_star = 0.5 * (lo + hi)
    p_star = special.expit(x_star)
    var = _variance_from_logit(x_star)
    ds = _weight_sum_derivative(p_star, a)
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
                 group_size: int | None = None, std: Std = "population", **estimator) -> list[FixedPoint]:
    """Every C4 fixed point in (p_ref, 1] for one question (kl=ref; kl=both has the same ones)."""
    if np.ndim(p_ref) or np.ndim(beta):
        raise ValueError("fixed_points takes one question (scalar p_ref and beta); use fixed_points_batch")
    _, p, slope = fixed_points_batch(p_ref, beta, norm, eps, group_size, std, **estimator)
    return [FixedPoint(float(a), float(s), bool(abs(s) < 1.0)) for a, s in zip(p, slope)]


# --------------------------------------------------------------------------- the limit from p_ref
def predicted_limit(p_ref, beta, kl: KL = "ref", beta_prev=0.0, norm: Norm = "mean_std", eps: float = 0.0,
                    group_size: int | None = None, std: Std = "population",
                    max_iters: int = 5000, tol: float = 1e-11, *, eps_inside: bool = True,
                    dynamic_sampling: bool = False, batch_std: float | None = None,
                    pass_k: int | None = None) -> np.ndarray:
    """The limit of C3 iterated from p_ref (vectorised over p_ref, beta, beta_prev).

    This, not a root, is what a measured trajectory converges to (C4: roots can repel, and the
    first step can overshoot the upper root). Where the iteration does not settle within
    ``max_iters`` (a 2-cycle when |h'(p*)| > 1), the result is NaN. A result of exactly 1.0 is an
    orbit that runs to p = 1 (eps = 0 population S; dynamic sampling past its unstable fixed point).
    """
    a = _check_common(norm, eps, group_size, std, eps_inside, dynamic_sampling, batch_std, pass_k)
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
        x_new = _pin_degenerate(_step_logit(xa, xr, kl, b[active], bp[active], a), xr, xa, kl)
        done_one = x_new >= LOGIT_ONE
        done = done_one | (np.abs(x_new - xa) <= tol * np.maximum(1.0, np.abs(xa))) | ~np.isfinite(x_new)
        x[active] = x_new
        result[active[done]] = special.expit(np.where(done_one[done], np.inf, x_new[done]))
        active = active[~done]
    return result.reshape(shape)


# --------------------------------------------------------------------------- E4: effective beta
def fit_effective_beta(p_ref, trajectory, kl: KL = "ref", norm: Norm = "mean_std", eps: float = 0.0,
                       beta_prev=0.0, group_size: int | None = None, std: Std = "population",
                       bounds: tuple[float, float] = (1e-3, 1e3), **estimator) -> tuple[float, float]:
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
                              norm=norm, eps=eps, group_size=group_size, std=std, **estimator)
        return float(np.sqrt(np.mean((pred[1:] - traj[1:]) ** 2)))

    # RMSE in beta can have several minima: a coarse log grid first, then Brent in the best cell.
    grid = np.linspace(np.log(lo), np.log(hi), 121)
    # the whole grid in one recurrence (beta on a leading axis): the same numbers as one call per point, ~100x fewer calls
    preds = pos_recurrence(p_ref, n_iters, kl=kl, beta=np.exp(grid).reshape(-1, *([1] * p_ref.ndim)),
                           beta_prev=beta_prev, norm=norm, eps=eps, group_size=group_size, std=std,
                           **estimator)  # (N+1, grid, *Q)
    errs = np.sqrt(np.mean((preds[1:] - traj[1:, None]) ** 2, axis=tuple(i for i in range(preds.ndim) if i != 1)))
    i = int(np.argmin(errs))
    a, c = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    from scipy import optimize  # imported here: only E4 needs it

    res = optimize.minimize_scalar(rmse, bounds=(a, c), method="bounded", options={"xatol": 1e-10})
    best = (res.x, res.fun) if res.fun <= errs[i] else (grid[i], errs[i])
    return float(np.exp(best[0])), float(best[1])


# --------------------------------------------------------------------------- C2: tabular optimum
def tabular_optimum(pi_prev, pi_ref, correct, kl: KL = "ref", beta=1.0, beta_prev=0.0, norm: Norm = "mean_std",
                    eps: float = 0.0, group_size: int | None = None, std: Std = "population",
                    **estimator) -> np.ndarray:
    """C2's closed-form maximiser of E_pi[A] - beta KL(pi||pi_ref) [- beta_prev KL(pi||pi_prev)].

    ``pi_prev``, ``pi_ref``: (..., K) distributions over a finite output set; ``correct``: (..., K)
    booleans (the verifier). The advantage is docs/theory.md's, evaluated at p = PoS of ``pi_prev``
    (E1's finite-G weights when ``group_size`` is given). Returns pi_n with the same shape.
    """
    a = _check_common(norm, eps, group_size, std, **estimator)
    beta, beta_prev = _check_kl(kl, beta, beta_prev)
    pi_prev, pi_ref = np.asarray(pi_prev, float), np.asarray(pi_ref, float)
    correct = np.asarray(correct, bool)
    if pi_prev.shape != pi_ref.shape or pi_prev.shape != correct.shape:
        raise ValueError(f"pi_prev {pi_prev.shape}, pi_ref {pi_ref.shape} and correct {correct.shape} must match")
    for name, pi in (("pi_prev", pi_prev), ("pi_ref", pi_ref)):
        if np.any(pi < 0) or not np.allclose(pi.sum(-1), 1.0, atol=1e-8):
            raise ValueError(f"{name} must be a probability distribution over its last axis")
    p_prev = np.clip((pi_prev * correct).sum(-1), 0.0, 1.0)
    if a.group_size is None:
        w_plus, w_minus = advantage_weights(p_prev, a.norm, a.eps, eps_inside=a.eps_inside, batch_std=a.batch_std)
    else:
        w_plus, w_minus = _finite_weights(p_prev, a)
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
    # the orbit from p_ref runs to p = 1 (limit exactly 1.0): eps = 0 population S, or dynamic
    # sampling past its unstable fixed point (E6: uncapped DAPO defeats the KL anchor)
    runs_to_one: bool = False


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
            std: Std = "population", **estimator) -> Prediction:
    """Trajectory, fixed points (of kl=ref/both; mirror has none below 1) and the limit, for one question.

    The fixed points of kl=both are ref's, but their ``slope``/``attracting`` are the both step's.
    ``estimator``: the keywords of :class:`Advantage` (eps_inside, dynamic_sampling, batch_std, pass_k).
    """
    kw = dict(norm=norm, eps=eps, group_size=group_size, std=std, **estimator)
    traj = pos_recurrence(p_ref, n_iters, kl=kl, beta=beta, beta_prev=beta_prev, **kw)
    fps = [] if kl == "mirror" else fixed_points(p_ref, beta, **kw)
    if kl == "both":
        fps = [_slope_under_both(fp, float(beta), float(beta_prev)) for fp in fps]
    limit = float(predicted_limit(p_ref, beta, kl=kl, beta_prev=beta_prev, **kw))
    return Prediction(traj, fps, limit, runs_to_one=bool(limit == 1.0))


def steps_to_reach(p_start: float, target: float, kl: KL = "mirror", beta: float = 1.0, beta_prev: float = 0.0,
                   norm: Norm = "mean_std", eps: float = 0.0, group_size: int | None = None,
                   std: Std = "population", max_iters: int = 10 ** 6, **estimator) -> int:
    """How many C3 steps from ``p_start`` (= p_ref) until p_n >= ``target`` (E6: mirror steps from 0.2
    to 0.99). Raises ValueError if it is not reached within ``max_iters``."""
    a = _check_common(norm, eps, group_size, std, **estimator)
    beta, beta_prev = _check_kl(kl, beta, beta_prev)
    x_ref = x = float(logit(_as_prob("p_start", p_start)))
    x_target = float(logit(_as_prob("target", target)))
    for n in range(1, int(max_iters) + 1):
        x = float(_step_logit(np.asarray(x), x_ref, kl, beta, beta_prev, a))
        if x >= x_target:
            return n
    raise ValueError(f"target {target!r} not reached from {p_start!r} within max_iters={max_iters}")


# --------------------------------------------------------------------------- E6: the shape test
SHAPE_LOGIT_CAP = 30.0  # |logit p| beyond this (p within 1e-13 of 0 or 1) is left out of the shape test


class ShapeFit(NamedTuple):
    """The shape test's fit: measured log-odds steps against S(p_{n-1}), through the origin."""
    slope: float     # 1/beta_eff: the step per unit of S
    r2: float        # share of the steps' variance that S(p_{n-1}) explains (1 - SS_res/SS_tot)
    n: int           # steps used (p_{n-1}, p_n and the anchor with |logit| <= SHAPE_LOGIT_CAP)

    @property
    def beta_eff(self) -> float:
        return 1.0 / self.slope if self.slope != 0 else np.inf


def shape_test(p_prev, p_n, p_ref=None, kl: KL = "mirror", norm: Norm = "mean_std", eps: float = 0.0,
               group_size: int | None = None, std: Std = "population", **estimator) -> ShapeFit:
    """E6's shape test: does the measured step follow S's shape, whatever its size?

    Per question and iteration (flattened arrays of the same shape), C3 says
      mirror: logit p_n - logit p_{n-1} = S(p_{n-1}) / beta
      ref:    logit p_n - logit p_ref   = S(p_{n-1}) / beta
    Regressing the left side on S(p_{n-1}) through the origin gives slope = 1/beta_eff and R^2: a
    wrong step size (an optimiser that stops early, a learning rate) moves the slope only; a wrong
    estimator (S's shape) lowers R^2. S is E1/E6's S_G for ``group_size`` and the estimator's keywords
    (:class:`Advantage`), the population S for group_size None. Any training run's PoS table can be
    fed in; kl=both has no one-term step and raises ValueError.
    """
    _check_choice("kl", kl, ("ref", "mirror"))
    a = _check_common(norm, eps, group_size, std, **estimator)
    p_prev, p_n = _as_prob("p_prev", p_prev).ravel(), _as_prob("p_n", p_n).ravel()
    if p_prev.shape != p_n.shape:
        raise ValueError(f"p_prev {p_prev.shape} and p_n {p_n.shape} must have the same size")
    if kl == "ref":
        if p_ref is None:
            raise ValueError("p_ref is needed for kl='ref'")
        anchor = np.broadcast_to(_as_prob("p_ref", p_ref).ravel(), p_prev.shape)
    else:
        anchor = p_prev
    # a PoS within ~1e-13 of 0 or 1 has lost the digits of its log-odds (measured or optimised): left out
    x_all = np.stack([logit(p_prev), logit(p_n), logit(anchor)])
    inside = np.all(np.abs(x_all) <= SHAPE_LOGIT_CAP, axis=0)
    y = logit(p_n[inside]) - logit(anchor[inside])
    x = _weight_sum(p_prev[inside], a)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2 or not np.any(x != 0):
        return ShapeFit(np.nan, np.nan, int(len(x)))
    slope = float(x @ y / (x @ x))
    ss_tot = float(((y - y.mean()) ** 2).sum())
    ss_res = float(((y - slope * x) ** 2).sum())
    # a constant S (dr_grpo, rloo, batch) has no shape to test: R^2 is NaN there, the slope still counts
    flat = float(np.ptp(x)) <= 1e-9 * float(np.abs(x).max())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 and not flat else np.nan
    return ShapeFit(slope, r2, int(len(x)))
