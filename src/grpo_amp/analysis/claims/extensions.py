"""This project's extensions E2 .. E5, one measure per row: ``(study, policy, theory) -> Measure | None``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from grpo_amp import registry, theory
from grpo_amp.analysis.claims.measure import Measure, fmt, fmt_interval, measure
from grpo_amp.analysis.claims.paper import run_gaps
from grpo_amp.analysis.claims.study import Study
from grpo_amp.analysis.claims.theories import C3, C3_G, Theory
from grpo_amp.analysis.stats import difference_interval, seed_interval


def _sweep_with_base(study: Study, policy: str, sweep: str, min_points: int) -> pd.DataFrame | None:
    """The sweep's runs plus its base run (mean_std, kl=ref, eps=0), sorted by the swept value."""
    base = study.base(policy)
    if base.empty:
        return None
    runs = pd.concat([base.iloc[:1], study.select(policy, sweep=sweep, variant=base["variant"].iloc[0])])
    return runs.sort_values(sweep) if runs[sweep].nunique() >= min_points else None


def e2a(study: Study, policy: str, t: Theory) -> Measure | None:
    """A measurement, no verdict: the C3 gap from the smallest to the largest G (no theory predicts its size)."""
    if not registry.policy(policy).sampled:
        return None
    runs = _sweep_with_base(study, policy, "group_size", min_points=2)
    if runs is None:
        return None
    gaps = [run_gaps(study, policy, r, t) for r in runs["run"]]
    diff = difference_interval(gaps[0], gaps[-1])
    return measure([diff[0]], "gap by G: " + ", ".join(f"{g:g}: {fmt_interval(*seed_interval(v))}"
                                                     for g, v in zip(runs["group_size"], gaps)),
                    interval=diff, n_seeds=len(gaps[-1]))


def e2b(study: Study, policy: str, t: Theory) -> Measure | None:
    """Practice under-amplifies: the signed mean of p_n - prediction on the base run (negative: below it)."""
    spec = registry.policy(policy)
    if not (spec.practice and spec.sampled and (spec.rung == "R6" or (spec.rung is None and spec.cell is None))):
        return None  # practice itself: tabular_sgd (R6) and the transformer family, not the ladder's rungs or
                     # the factorial's other cells (their bias is in factorial.csv)
    base = study.base(policy)
    if base.empty:
        return None
    run = base["run"].iloc[0]
    bias = [float(np.mean(m[1:] - p[1:])) for m, p in zip(study.measured(policy, run), study.trajectory(policy, run, t))]
    return measure(bias, f"{run}: absolute gap {fmt_interval(*seed_interval(run_gaps(study, policy, run, t)))}")


def e3(study: Study, policy: str, t: Theory) -> Measure | None:
    """Held-out PoS gain (iteration N - 0) per seed, with the paired t over questions beside it."""
    if registry.policy(policy).family in ("tabular", "twin"):
        return None  # tabular questions share no parameters: held-out PoS cannot move by construction
    base = study.select(policy, sweep="variant")
    if base.empty:
        return None
    run = base["run"].iloc[0]
    pred = study.predictions[(policy, run)]
    held = pred[pred["split"] != "train"]
    if held.empty:
        return None
    gains, ts = [], []
    for _, g in held.groupby("seed", sort=True):
        wide = g.pivot(index="iteration", columns="question", values="pos").sort_index()
        gain = wide.iloc[-1] - wide.iloc[0]
        gains.append(float(gain.mean()))
        ts.append(float(gain.mean() / (gain.std(ddof=1) / np.sqrt(len(gain)))) if gain.std() > 0 else 0.0)
    p_ref = float(held[held["iteration"] == 0]["pos"].mean())
    evidence = (f"{run}: {held['question'].nunique()} held-out questions (p_ref {fmt(p_ref)}), paired t per seed "
                + ", ".join(fmt(x) for x in ts))
    return measure(gains, evidence + _e3_controls(study, policy, run, held, np.array(gains)))


def _e3_controls(study: Study, policy: str, run: str, held: pd.DataFrame, gains: np.ndarray) -> str:
    """E3's effects (grpo.e3_controls): the held-out gain minus the shuffled-rewards run's (Welch over seeds)
    and minus the tempered pi_ref's (paired by seed), each with its 95% interval; "" without controls."""
    out = ""
    seeds = sorted(held["seed"].unique())
    for control in [p for p, spec in registry.POLICIES.items() if spec.control_of == policy]:
        if (control, run) in study.predictions:
            c = study.predictions[(control, run)]
            c = c[c["split"] != "train"]
            c_gains = [float(g.loc[g["iteration"] == g["iteration"].max(), "pos"].mean()
                             - g.loc[g["iteration"] == 0, "pos"].mean()) for _, g in c.groupby("seed", sort=True)]
            out += f"; effect minus {control}'s gain: {fmt_interval(*difference_interval(c_gains, gains))}"
    if (policy, run) in study.e3:
        e = study.e3[(policy, run)].set_index("seed").loc[seeds]
        tempered = (e["heldout_p_tempered"] - e["heldout_p_ref"]).to_numpy()
        out += (f"; effect minus the tempered pi_ref's gain (T = {fmt(float(e['temperature'].mean()))}, matched to "
                f"the train entropy drop): {fmt_interval(*seed_interval(gains - tempered))}")
    return out


def e4(study: Study, policy: str, t: Theory) -> Measure | None:
    """The C3 fit with an effective beta (the theory's S, kl; beta fitted): the largest RMSE over runs.
    Where no penalty is applied (TRL's lr sweep around kl=mirror) beta_eff is the step size's regularisation."""
    explicit = study.select(policy, sweep=["variant", "beta"], kl="ref")
    implicit = study.select(policy, sweep=["variant", "lr"], kl="mirror") if "lr" in registry.policy(policy).sweeps \
        else explicit.iloc[:0]
    runs = pd.concat([explicit, implicit])
    if runs.empty:
        return None
    if t not in (C3, C3_G):  # a wrong theory is fitted on the base run only: a finite-G fit costs ~1 s per seed
        runs = runs[runs["run"].isin(study.base(policy)["run"])]
        if runs.empty:
            return None
        explicit = explicit[explicit["run"].isin(runs["run"])]
        implicit = implicit.iloc[:0]
    fits = {}
    for run in runs["run"]:
        kw = study.kwargs(policy, run, t)
        kw.pop("beta")
        fits[run] = [theory.fit_effective_beta(m[0], m, **kw) for m in study.measured(policy, run)]
    rmse = {run: np.array([f[1] for f in fit]) for run, fit in fits.items()}
    worst = max(rmse, key=lambda k: rmse[k].mean())
    beta_of = dict(zip(runs["run"], runs["beta"]))
    evidence = f"worst {worst}; beta_eff/beta: " + ", ".join(
        f"{r}: {fmt(np.mean([f[0] for f in fits[r]]) / beta_of[r])}" for r in explicit["run"])
    if not implicit.empty:
        evidence += "; no explicit penalty (kl=mirror fit), beta_eff per lr: " + ", ".join(
            f"lr {r.lr:g}: {fmt_interval(*seed_interval([f[0] for f in fits[r.run]]))}"
            for r in implicit.sort_values("lr").itertuples())
    return measure(rmse[worst], evidence)


def e5(study: Study, policy: str, t: Theory) -> Measure | None:
    """R1 = C3 and R2 = C3 with S_G: the largest |p_n - prediction| over variants, questions and n >= 1."""
    if registry.policy(policy).rung not in ("R1", "R2"):
        return None
    runs = study.select(policy, sweep="variant")
    worst = max((max(float(np.nanmax(np.abs(m[1:] - p[1:])))
                     for m, p in zip(study.measured(policy, r), study.trajectory(policy, r, t))), r)
                for r in runs["run"])
    return measure([worst[0]], f"worst {worst[1]}; a numerical maximiser with no closed form in its path")


def e5_sweep(study: Study, policy: str, t: Theory) -> Measure | None:
    """R3 -> R2 as M grows, R4 -> R3 as m grows: the change of the C3_G gap from the smallest to the largest."""
    rung = registry.policy(policy).rung
    if rung not in ("R3", "R4"):
        return None
    sweep = "inner_steps" if rung == "R3" else "groups_per_question"
    runs = _sweep_with_base(study, policy, sweep, min_points=2)
    if runs is None:
        return None
    gaps = [run_gaps(study, policy, r, t) for r in runs["run"]]
    diff = difference_interval(gaps[0], gaps[-1])
    return measure([diff[0]], f"gap_G by {'M' if rung == 'R3' else 'm'}: " + ", ".join(
        f"{v:g}: {fmt_interval(*seed_interval(g))}" for v, g in zip(runs[sweep], gaps)), interval=diff,
                    n_seeds=len(gaps[-1]))


def e5_visible(study: Study, policy: str, t: Theory) -> Measure | None:
    """R5: one group's own maximiser sits visibly off C3_G (E[argmax] != argmax E)."""
    base = study.base(policy)
    if registry.policy(policy).rung != "R5" or base.empty:
        return None
    return measure(run_gaps(study, policy, base["run"].iloc[0], t), base["run"].iloc[0])


def _u_shape(study: Study, policy: str, t: Theory):
    """R6's M sweep: the gaps, and the interior M with the smallest mean gap."""
    if registry.policy(policy).rung != "R6":
        return None
    runs = _sweep_with_base(study, policy, "inner_steps", min_points=3)
    if runs is None:
        return None
    gaps = [run_gaps(study, policy, r, t) for r in runs["run"]]
    best = 1 + int(np.argmin([g.mean() for g in gaps[1:-1]]))  # interior points only
    text = "gap_G by M: " + ", ".join(f"{m:g}: {fmt_interval(*seed_interval(g))}"
                                      for m, g in zip(runs["inner_steps"], gaps))
    return runs["inner_steps"].tolist(), gaps, best, text


def e5_u_left(study: Study, policy: str, t: Theory) -> Measure | None:
    """R6: more inner steps first shrink the gap (optimisation error): interior minimum - smallest M."""
    u = _u_shape(study, policy, t)
    if u is None:
        return None
    ms, gaps, best, text = u
    diff = difference_interval(gaps[0], gaps[best])
    return measure([diff[0]], f"M = {ms[best]:g} vs M = {ms[0]:g}; {text}", interval=diff, n_seeds=len(gaps[0]))


def e5_u_right(study: Study, policy: str, t: Theory) -> Measure | None:
    """R6: then they grow it (fitting one group's noise): largest M - interior minimum."""
    u = _u_shape(study, policy, t)
    if u is None:
        return None
    ms, gaps, best, text = u
    diff = difference_interval(gaps[best], gaps[-1])
    return measure([diff[0]], f"M = {ms[-1]:g} vs M = {ms[best]:g}; {text}", interval=diff, n_seeds=len(gaps[0]))
