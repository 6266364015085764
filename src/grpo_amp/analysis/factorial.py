"""E5's tabular ladder as a 2 x 2 x 2 factorial, per variant: each cell's gap to C3, and how much of
practice's gap each of the three changes makes (issue 18; docs/theory.md's E5).

    cells = factorial_table(runs, predictions)    # FACTORIAL_COLUMNS: one row per (variant, cell)
    parts = attribution_table(runs, predictions)  # ATTRIBUTION_COLUMNS: factors, interactions, total

The factors and their levels are ``registry.FACTORS`` (R1's level first, practice's second); each cell
is the registry policy whose ``cell`` it is (grpo.rungs' docstring maps R1, R2, R3, R5, R6 and the three
true-p policies). ``gap`` is the ladder's: mean |p_n - C3| over train questions and n >= 1; ``bias`` is
its signed twin, mean (p_n - C3), against the same prediction (population C3 for every cell, so that
cells differ only by what they do, never by what they are compared with). A variant enters only if the
scale ran all eight cells for it.

Attribution (per variant, cells coded z in {0, 1}^3, 1 = practice's level, v(z) = a cell's gap):
  main effect of a factor: mean over the other factors' four settings of v(z_i = 1) - v(z_i = 0)
  interaction of a set of factors: the 2^3 design's contrast (product of the +-1 codes) / 4
  Shapley part of a factor: its marginal change v(S + i) - v(S) averaged over the 3! orders in which
    the three changes can be made one at a time (weights 1/3, 1/6, 1/6, 1/3 over |S| = 0, 1, 1, 2);
    the three parts add up to v(1, 1, 1) - v(0, 0, 0) = R6's gap - R1's, whatever the interactions.
  chain part of a factor: its marginal change in the chain ladder's one order (advantage, optimiser,
    objective: R1 -> R2 -> R3 -> R6, grpo_amp.analysis.ladder without R4), which adds up to the same total.
Intervals: every number is a fixed linear combination of the eight cells, computed seed by seed and
then reported as the mean over seeds with a 95% Student-t interval (paired: the sampled cells share
the seed list cfg.seed, cfg.seed + 1, ... and a seed's draws start from the same generator state; a
deterministic cell, R1/R2/R3/tabular_true_p_steps, has one value that enters every seed's combination).
Reads the predict files only.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from grpo_amp import registry
from grpo_amp.io import InputError
from grpo_amp.schema import ATTRIBUTION_COLUMNS, FACTORIAL_COLUMNS
from grpo_amp.analysis.stats import seed_interval
from grpo_amp.analysis.summaries import mean_bias, mean_gap

FACTOR_NAMES = tuple(registry.FACTORS)  # advantage, optimiser, objective
CODES = tuple(itertools.product((0, 1), repeat=len(FACTOR_NAMES)))  # (0,0,0) = R1 ... (1,1,1) = R6


def cell_of(code: tuple[int, ...]) -> tuple[str, ...]:
    """(0, 1, 0) -> ("true_p", "steps", "exact"): a code's factor levels."""
    return tuple(registry.FACTORS[f][z] for f, z in zip(FACTOR_NAMES, code))


# --------------------------------------------------------------------------- the design's weights
def shapley_weights(n: int = len(FACTOR_NAMES)) -> np.ndarray:
    """(n, 2^n): factor i's Shapley part is weights[i] @ v over CODES (the closed form, by |S|)."""
    codes = list(itertools.product((0, 1), repeat=n))
    w = np.zeros((n, len(codes)))
    for i in range(n):
        for j, z in enumerate(codes):
            if z[i]:
                continue
            s = sum(z)
            weight = math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n)
            w[i, codes.index(z[:i] + (1,) + z[i + 1:])] += weight   # v(S + i)
            w[i, j] -= weight                                         # - v(S)
    return w


def chain_weights(n: int = len(FACTOR_NAMES)) -> np.ndarray:
    """(n, 2^n): factor i's marginal change when the factors change in their table order (the chain ladder)."""
    codes = list(itertools.product((0, 1), repeat=n))
    w = np.zeros((n, len(codes)))
    for i in range(n):
        before = (1,) * i + (0,) * (n - i)
        w[i, codes.index(before[:i] + (1,) + before[i + 1:])] += 1.0
        w[i, codes.index(before)] -= 1.0
    return w


def contrast_weights(factors: tuple[int, ...], n: int = len(FACTOR_NAMES)) -> np.ndarray:
    """(2^n,): the 2^n design's effect of a factor (one index) or interaction (several): the product of the
    factors' +-1 codes, over 2^(n-1)."""
    codes = itertools.product((0, 1), repeat=n)
    return np.array([np.prod([2 * z[i] - 1 for i in factors]) for z in codes], dtype=float) / 2 ** (n - 1)


# --------------------------------------------------------------------------- per seed
def _factorial_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The plain runs of the eight cells' policies, with their cell; variants missing a cell are left out."""
    plain = runs[(runs["sweep"] == "variant") & runs["policy"].map(lambda p: registry.POLICIES.get(p) is not None
                                                                   and registry.POLICIES[p].cell is not None)]
    plain = plain.assign(cell=plain["policy"].map(lambda p: registry.POLICIES[p].cell))
    complete = plain.groupby("variant")["cell"].nunique()
    return plain[plain["variant"].isin(complete[complete == len(CODES)].index)]


def per_seed(runs: pd.DataFrame, predictions: dict[tuple[str, str], pd.DataFrame],
             column: str = "pred_trajectory") -> dict[str, pd.DataFrame]:
    """variant -> frame (index: seed; columns: (kind, code) for kind gap/bias and the eight CODES), paired.

    Sampled cells keep the seeds they share (an InputError if they share none); a deterministic cell's one
    value is repeated on every seed.
    """
    out = {}
    for variant, sub in _factorial_runs(runs).groupby("variant", sort=False):
        values = {}
        for r in sub.itertuples(index=False):
            pred = predictions[(r.policy, r.run)]
            by_seed = pred.groupby("seed", sort=True)
            code = tuple(registry.FACTORS[f].index(level) for f, level in zip(FACTOR_NAMES, r.cell))
            values[("gap", code)] = by_seed.apply(lambda g: mean_gap(g, column), include_groups=False)
            values[("bias", code)] = by_seed.apply(lambda g: mean_bias(g, column), include_groups=False)
            values[("sampled", code)] = registry.POLICIES[r.policy].sampled
        sampled = [values[("gap", c)].index for c in CODES if values[("sampled", c)]]
        seeds = sorted(set.intersection(*map(set, sampled))) if sampled else list(values[("gap", CODES[0])].index)
        if not seeds:
            raise InputError(f"factorial: the sampled cells of variant {variant} share no seed")
        frame = {}
        for kind in ("gap", "bias"):
            for c in CODES:
                s = values[(kind, c)]
                frame[(kind, c)] = s.reindex(seeds).to_numpy() if values[("sampled", c)] else np.repeat(s.iloc[0], len(seeds))
        out[variant] = pd.DataFrame(frame, index=pd.Index(seeds, name="seed"))
    return out


# --------------------------------------------------------------------------- the two tables
def factorial_table(runs: pd.DataFrame, predictions: dict[tuple[str, str], pd.DataFrame]) -> pd.DataFrame:
    """One row per (variant, cell): the cell's gap and bias, mean over its own seeds with a 95% t-interval."""
    rows = []
    plain = _factorial_runs(runs)
    for r in plain.itertuples(index=False):
        pred = predictions[(r.policy, r.run)]
        by_seed = pred.groupby("seed", sort=True)
        gaps = by_seed.apply(lambda g: mean_gap(g, "pred_trajectory"), include_groups=False)
        biases = by_seed.apply(lambda g: mean_bias(g, "pred_trajectory"), include_groups=False)
        gap, bias = seed_interval(gaps), seed_interval(biases)
        rows.append({"variant": r.variant, **dict(zip(FACTOR_NAMES, r.cell)), "policy": r.policy,
                     "rung": registry.POLICIES[r.policy].rung or "", "gap": gap[0], "gap_lo": gap[1], "gap_hi": gap[2],
                     "bias": bias[0], "bias_lo": bias[1], "bias_hi": bias[2], "n_seeds": len(gaps)})
    table = pd.DataFrame(rows, columns=FACTORIAL_COLUMNS)
    order = {cell_of(c): i for i, c in enumerate(CODES)}
    key = table[list(FACTOR_NAMES)].apply(lambda r: order[tuple(r)], axis=1) if len(table) else []
    return table.assign(_k=key).sort_values(["variant", "_k"], kind="stable").drop(columns="_k").reset_index(drop=True)


def attribution_table(runs: pd.DataFrame, predictions: dict[tuple[str, str], pd.DataFrame]) -> pd.DataFrame:
    """Per variant: each factor's main effect and Shapley part, each interaction's effect, and the total
    (R6's gap - R1's, which the three Shapley parts add up to), all paired over seeds."""
    shapley, chain = shapley_weights(), chain_weights()
    rows = []
    for variant, frame in per_seed(runs, predictions).items():
        v = frame[[("gap", c) for c in CODES]].to_numpy()  # (seeds, 8)
        n = len(frame)

        def row(factor, kind, effect, part=None, in_chain=None):
            nan = (np.nan,) * 3
            e = seed_interval(effect)
            s = seed_interval(part) if part is not None else nan
            c = seed_interval(in_chain) if in_chain is not None else nan
            return {"variant": variant, "factor": factor, "kind": kind, "effect": e[0], "effect_lo": e[1],
                    "effect_hi": e[2], "shapley": s[0], "shapley_lo": s[1], "shapley_hi": s[2],
                    "chain": c[0], "chain_lo": c[1], "chain_hi": c[2], "n_seeds": n}
        for i, name in enumerate(FACTOR_NAMES):
            rows.append(row(name, "factor", v @ contrast_weights((i,)), v @ shapley[i], v @ chain[i]))
        for size in (2, 3):
            for combo in itertools.combinations(range(len(FACTOR_NAMES)), size):
                rows.append(row(":".join(FACTOR_NAMES[i] for i in combo), "interaction", v @ contrast_weights(combo)))
        total = v[:, -1] - v[:, 0]
        rows.append(row("total", "total", total, v @ shapley.sum(0), v @ chain.sum(0)))
    return pd.DataFrame(rows, columns=ATTRIBUTION_COLUMNS)
