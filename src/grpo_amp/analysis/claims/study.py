"""What the claims read: runs.csv rows, every run's predict frame and C1 table, and each theory's
prediction for a run (``Study.trajectory``, ``Study.limit``), computed once per (run, theory).

The policy's own predictions are the predict stage's columns (``pred_trajectory``, ``pred_trajectory_G``,
``pred_limit``); a wrong theory's are computed here from the same measured p_ref with ``grpo_amp.theory``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from grpo_amp import registry, theory
from grpo_amp.analysis.claims.theories import C3, C3_G, FINITE_G, POPULATION, Theory, theory_kwargs
from grpo_amp.analysis.summaries import mean_gap


def predictions_of(policy: str) -> tuple[str, ...]:
    """Which C3 a policy is judged by: population S for the closed form and R1, E1's S_G for the finite-G
    rungs R2..R5, both for practice (so a reader sees how much of its gap E1 explains); population S for the
    factorial's true-p cells (grpo.rungs)."""
    spec = registry.policy(policy)
    if spec.rung in ("R2", "R3", "R4", "R5") or policy == "transformer_r2":  # the transformer's exact R2 too
        return (FINITE_G,)
    if spec.cell is not None and spec.cell[0] == "true_p":
        return (POPULATION,)  # E5's factorial: advantages from the true p_{n-1}, in expectation the population objective
    if spec.sampled:
        return (POPULATION, FINITE_G)
    return (POPULATION,)


@dataclass
class Study:
    runs: pd.DataFrame                                # RUN_COLUMNS
    predictions: dict[tuple[str, str], pd.DataFrame]  # (policy, run) -> PREDICT_COLUMNS frame
    c1: dict[tuple[str, str], pd.DataFrame]           # (policy, run) -> C1_COLUMNS frame
    finite_group: dict[str, dict] = field(default_factory=dict)  # policy -> the loop's own advantage (TRL)
    # (policy, run) -> E3_CONTROL_COLUMNS frame (train dir's e3_controls.csv: the tempered pi_ref per seed)
    e3: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    # (policy, run) -> REDRAWS_COLUMNS frame + max_redraws, the run's cap (train dir's redraws.csv: dynamic
    # sampling's redraws per question, E6d)
    redraws: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    def select(self, policy: str, **where) -> pd.DataFrame:
        """runs.csv rows of ``policy`` with each ``column=value`` (or a list of values); cached (read-only)."""
        key = ("select", policy, *sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in where.items()))
        if key not in self._cache:
            rows = self.runs[self.runs["policy"] == policy]
            for column, value in where.items():
                rows = rows[rows[column].isin(value if isinstance(value, (list, tuple)) else [value])]
            self._cache[key] = rows
        return self._cache[key]

    def base(self, policy: str) -> pd.DataFrame:
        """The base run of every sweep: mean_std, kl=ref, eps=0, no swept knob."""
        return self.select(policy, sweep="variant", kl="ref", norm="mean_std", eps=0.0)

    def settings(self, policy: str, run: str) -> dict:
        key = ("settings", policy, run)
        if key not in self._cache:
            self._cache[key] = self.select(policy, run=run).iloc[0].to_dict()
        return self._cache[key]

    def train_rows(self, policy: str, run: str) -> pd.DataFrame:
        df = self.predictions[(policy, run)]
        return df[df["split"] == "train"]

    def per_seed(self, policy: str, run: str, func: Callable[[pd.DataFrame], float]) -> np.ndarray:
        """``func`` of each seed's train rows of one run (ordered by seed)."""
        rows = self.train_rows(policy, run)
        return np.array([func(g) for _, g in rows.groupby("seed", sort=True)], dtype=float)

    def gaps(self, policy: str, run: str, column: str = "pred_trajectory") -> np.ndarray:
        return self.per_seed(policy, run, lambda g: mean_gap(g, column))

    # ------------------------------------------------------------------ measured and predicted, per seed
    def measured(self, policy: str, run: str) -> list[np.ndarray]:
        """Each seed's measured PoS, (N+1, Q) over train questions; row 0 is the measured p_ref."""
        key = ("measured", policy, run)
        if key not in self._cache:
            self._cache[key] = [g.pivot(index="iteration", columns="question", values="pos").sort_index().to_numpy()
                                for _, g in self.train_rows(policy, run).groupby("seed", sort=True)]
        return self._cache[key]

    def _column(self, policy: str, run: str, column: str) -> list[np.ndarray]:
        return [g.pivot(index="iteration", columns="question", values=column).sort_index().to_numpy()
                for _, g in self.train_rows(policy, run).groupby("seed", sort=True)]

    def kwargs(self, policy: str, run: str, t: Theory) -> dict:
        return theory_kwargs(t, self.settings(policy, run), self.finite_group.get(policy))

    def trajectory(self, policy: str, run: str, t: Theory) -> list[np.ndarray]:
        """Theory ``t``'s C3 trajectory from each seed's measured p_ref, (N+1, Q) per seed."""
        key = ("trajectory", policy, run, t)
        if key not in self._cache:
            if t.null:
                self._cache[key] = [np.broadcast_to(m[0], m.shape) for m in self.measured(policy, run)]
            elif t in (C3, C3_G):  # the predict stage's own columns
                self._cache[key] = self._column(policy, run, "pred_trajectory_G" if t.finite_g else "pred_trajectory")
            else:
                kw = self.kwargs(policy, run, t)
                self._cache[key] = [theory.pos_recurrence(m[0], len(m) - 1, **kw) for m in self.measured(policy, run)]
        return self._cache[key]

    def limit(self, policy: str, run: str, t: Theory) -> list[np.ndarray]:
        """Theory ``t``'s limit from each seed's measured p_ref (C4), (Q,) per seed; NaN where it cycles."""
        key = ("limit", policy, run, t)
        if key not in self._cache:
            if t.null:
                self._cache[key] = [m[0] for m in self.measured(policy, run)]
            elif t == C3:
                self._cache[key] = [c[0] for c in self._column(policy, run, "pred_limit")]
            else:
                kw = self.kwargs(policy, run, t)
                self._cache[key] = [theory.predicted_limit(m[0], **kw) for m in self.measured(policy, run)]
        return self._cache[key]
