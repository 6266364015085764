"""Synthetic studies for the claims tests (test_claims, test_verdicts, test_pipeline): built the way
``compare`` builds them (a pos table per run, ``predict.predict_frame``, compare's own ``run_row``, a
C1 frame per plain-variant run), and ``verdict_by_hand``: the README's interval rule written out again,
on purpose apart from ``stats.row_verdict``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from grpo_amp import theory
from grpo_amp.analysis.claims import Study
from grpo_amp.analysis.predict import predict_frame
from grpo_amp.config import KLTarget, Norm, VariantConfig
from grpo_amp.schema import C1_COLUMNS, POS_COLUMNS, PREDICT_COLUMNS, RUN_COLUMNS, RUN_SETTINGS
from grpo_amp.stages.compare import run_row

N_ITERS = 12
SE = 0.01  # the stated standard error of every synthetic C1 check

VARIANTS = {
    "mean_std_ref": VariantConfig(name="mean_std_ref"),
    "mean_std_mirror": VariantConfig(name="mean_std_mirror", kl=KLTarget.mirror),
    "mean_std_both": VariantConfig(name="mean_std_both", kl=KLTarget.both, beta_prev=1.0),
    "mean_only_ref": VariantConfig(name="mean_only_ref", norm=Norm.mean_only),
}


def _variant(name: str, beta: float | None = None) -> VariantConfig:
    v = VARIANTS[name]
    return v if beta is None else VariantConfig(name=v.name, norm=v.norm, kl=v.kl, beta=beta, beta_prev=v.beta_prev,
                                                eps=v.eps, std=v.std)


def _c3(p_ref, v: VariantConfig, n_iters=N_ITERS, beta=None) -> np.ndarray:
    return theory.pos_recurrence(p_ref, n_iters, kl=v.kl.value, beta=v.beta if beta is None else beta,
                                 beta_prev=v.beta_prev, norm=v.norm.value, eps=v.eps, std=v.std.value)


def _pos_table(train: np.ndarray, heldout: np.ndarray, kl_in_correct: float = 0.0, seed: int = 0,
               n_correct: int | None = None) -> pd.DataFrame:
    """POS_COLUMNS of one seed from (N+1, Q_train) and (N+1, Q_heldout) measured PoS; correct sets of n_correct
    outputs, else 1 + question % 4."""
    rows = []
    q_train, q_held = train.shape[1], heldout.shape[1]
    for n in range(train.shape[0]):
        for split, values, offset in (("train", train[n], 0), ("heldout", heldout[n], q_train)):
            for i, p in enumerate(values):
                rows.append({"question": offset + i, "seed": seed, "split": split, "iteration": n, "pos": p, "pos_lo": p,
                             "pos_hi": p, "method": "exact", "kl_in_correct": kl_in_correct if n else 0.0,
                             "n_correct": n_correct or 1 + (offset + i) % 4})
    df = pd.DataFrame(rows, columns=POS_COLUMNS)
    assert len(df) == (q_train + q_held) * train.shape[0]
    return df


def _c1_frame(pos: np.ndarray, group_size: int, v: VariantConfig, mode: str, rng, seed: int = 0,
              se: float = SE) -> pd.DataFrame:
    """C1's surrogate: E1's closed form w+_G(p_{n-1}) p_n - w-_G(p_{n-1}) (1 - p_n), plus noise or bias."""
    rows = []
    for n in range(1, pos.shape[0]):
        wp, wm = theory.finite_group_weights(pos[n - 1], group_size, norm=v.norm.value, eps=v.eps, std=v.std.value)
        closed = wp * pos[n] - wm * (1 - pos[n])
        extra = rng.normal(0.0, se, size=closed.shape) if mode == "noise" else np.full(closed.shape, 5 * se)
        for q, s in enumerate(closed + extra):
            rows.append({"question": q, "seed": seed, "iteration": n, "surrogate": s, "surrogate_se": se,
                         "n_groups": 16})
    return pd.DataFrame(rows, columns=C1_COLUMNS)


class Builder:
    """Collects runs into a Study, as the compare stage does."""

    def __init__(self, p_ref, seed=0):
        self.p_ref = np.asarray(p_ref, float)
        self.held = np.linspace(0.2, 0.6, 4)
        self.rows, self.predictions, self.c1 = [], {}, {}
        self.rng = np.random.default_rng(seed)

    def add(self, policy, run, variant, sweep, measured, group_size=8, inner_steps=12, kl_in_correct=0.0,
            c1="noise", heldout=None, groups_per_question=1, c1_se=SE, lr=1e-3, n_correct=None):
        """``measured``: (N+1, Q) PoS of one seed, or a list of them (seeds 0, 1, ...)."""
        v = variant
        seeds = [measured] if isinstance(measured, np.ndarray) else list(measured)
        n_rows = seeds[0].shape[0]
        heldout = np.broadcast_to(self.held, (n_rows, len(self.held))) if heldout is None else heldout
        pos = pd.concat([_pos_table(m, heldout, kl_in_correct, seed=s, n_correct=n_correct) for s, m in enumerate(seeds)],
                        ignore_index=True)
        pred = predict_frame(pos, v, group_size)
        assert list(pred.columns) == PREDICT_COLUMNS
        # the flattened config train writes to run.json; compare's own run_row turns it into the runs.csv row
        conf = {"variant.norm": v.norm.value, "variant.kl": v.kl.value, "variant.beta": v.beta,
                "variant.beta_prev": v.beta_prev, "variant.eps": v.eps, "variant.std": v.std.value,
                "grpo.group_size": group_size, "grpo.inner_steps": inner_steps, "grpo.clip_eps": None,
                "grpo.kl_estimator": "full_vocab", "grpo.groups_per_question": groups_per_question, "grpo.lr": lr,
                "grpo.iterations": n_rows - 1}
        row = run_row(policy, run, conf, pred)
        assert row["sweep"] == sweep and row["variant"] == v.name and list(row)[2:2 + len(RUN_SETTINGS)] == RUN_SETTINGS
        assert row["n_seeds"] == len(seeds)
        self.rows.append(row)
        self.predictions[(policy, run)] = pred
        if c1 is not None and sweep == "variant":
            self.c1[(policy, run)] = pd.concat([_c1_frame(m, group_size, v, c1, self.rng, seed=s, se=c1_se)
                                                for s, m in enumerate(seeds)], ignore_index=True)
        return self

    def study(self) -> Study:
        return Study(pd.DataFrame(self.rows, columns=RUN_COLUMNS), self.predictions, self.c1)


def verdict_by_hand(row) -> str:
    """The interval rule from the row's columns alone: value_lo, value_hi, tolerance, criterion, power."""
    if not isinstance(row["criterion"], str) or row["criterion"] == "":
        return "measured"
    lo, hi, tol = row["value_lo"], row["value_hi"], row["tolerance"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "inconclusive"
    if row["criterion"] == "<=":
        verdict = "holds" if hi <= tol else "fails" if lo > tol else "inconclusive"
    else:
        verdict = "holds" if lo >= tol else "fails" if hi < tol else "inconclusive"
    rejected = int(str(row["power"]).split("/")[0])
    return "no power" if verdict == "holds" and rejected == 0 else verdict
