"""E6, the GRPO family of advantage estimators (docs/theory.md E6): two measures for ``criteria``.

The runs are the estimator sweep (``VARIANT-est<name>``, runs.csv column ``estimator``) with its base
(``grpo``, the variant's own advantage). The predict stage's ``_G`` columns already use each run's
estimator (grpo_amp.estimators, the same row as the trainer's advantage): they are the right theory.

- ``e6_r2``: R2 (an exact maximiser) meets each estimator's C3 with S_G one step at a time: the
  largest |p_n - one C3_G step from the measured p_{n-1}| over estimators, questions and n >= 1. The
  named wrong theories (``theories.wrong_theories``: beta x2, population weights, ...) are computed from
  the variant's settings, so they also ignore the estimator: each must miss.
- ``e6_order``: practice ranks the estimators as C3_G predicts: Spearman's rho between the predicted
  (C3_G trajectory) and measured final mean PoS over estimators, per seed (a sign check, power "null");
  the evidence gives the share of shuffled orderings that reach the same rho (its power as a ranking).
- ``e6_rescale``: E6's exact rescalings, measured. RLOO's advantage is G/(G-1) times Dr. GRPO's and a
  sample-std advantage (verl) is sqrt((G-1)/G) times the population-std one (GRPO with eps = 0), so
  each pair's trajectories are one recurrence with beta rescaled: fitted with the same C3_G (the
  second estimator's), beta_eff(first) / beta_eff(second) = (G-1)/G and sqrt(G/(G-1)). The value per
  seed is the largest |ratio / predicted - 1| over the pairs the scale ran; the wrong theory "no
  rescaling" predicts ratio 1 (the size of the effect: 12.5% and 6.9% at G = 8).
- ``e6_redraws`` (E6d): dynamic sampling's redraws per (question, iteration) against the Geometric law at
  the measured p_n-1 (mean 1/Z - 1 per group uncapped, truncated at the run's cap), each count standardised
  by the law's mean and SD, summed to a z-score per seed; the named wrong laws (``REDRAW_LAWS``) each
  predict another mean.
- ``e6_runaway`` (E6e): from the basin where C3_G's orbit runs to p = 1, the uncapped run's final PoS ends
  nearer the runaway prediction than the anchored one of the same estimator without 1/Z; the capped run
  (dapo, 16 redraws) and the drops are evidence.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy import stats

from grpo_amp import estimators, registry, theory
from grpo_amp.analysis.claims.measure import TOLERANCE, Measure, fmt, measure
from grpo_amp.analysis.claims.study import Study
from grpo_amp.analysis.claims.theories import C3_G, Theory

MAX_PERMUTATIONS = 5040   # every ordering up to 7 estimators; beyond, this many seeded random ones


def estimator_runs(study: Study, policy: str) -> pd.DataFrame:
    """The estimator sweep of ``policy`` with its base run (empty where the scale made none)."""
    if "estimator" not in study.runs.columns:
        return study.runs.iloc[:0]
    sweep = study.select(policy, sweep="estimator")
    if sweep.empty:
        return sweep
    base = study.base(policy)
    base = base[base["variant"].isin(sweep["variant"].unique())]
    return pd.concat([base, sweep], ignore_index=True)


def run_estimator(row) -> str:
    """The estimator a runs.csv row's loop computes: its config's (grpo: the variant's own), except through TRL,
    whose own advantage it is (a trl run with grpo computes TRL's default: trl_family.settings.computed_estimator)."""
    name = str(row["estimator"]) if isinstance(row["estimator"], str) else "grpo"
    if registry.policy(row["policy"]).advantage == "trl":
        from grpo_amp.trl_family.settings import computed_estimator

        return computed_estimator(name, row["norm"])
    return name




def _one_step(study: Study, policy: str, run: str, t: Theory) -> list[np.ndarray]:
    if t == C3_G:  # the predict stage's column: the run's own estimator
        return study._column(policy, run, "pred_one_step_G")
    kw = study.kwargs(policy, run, t)
    return [np.vstack([m[0], theory.pos_step(m[:-1], m[0], **kw)]) for m in study.measured(policy, run)]


def e6_r2(study: Study, policy: str, t: Theory) -> Measure | None:
    if registry.policy(policy).rung != "R2":
        return None
    runs = estimator_runs(study, policy)
    if runs.empty:
        return None
    errors = {}
    for _, r in runs.iterrows():
        errors[run_estimator(r)] = max(float(np.nanmax(np.abs(m[1:] - p[1:])))
                               for m, p in zip(study.measured(policy, r["run"]), _one_step(study, policy, r["run"], t)))
    worst = max(errors, key=errors.get)
    return measure([errors[worst]], f"worst {worst}; per estimator: " + ", ".join(f"{k}: {fmt(v)}"
                                                                                   for k, v in errors.items()))


def permutation_share(predicted, measured, rho: float, limit: int = MAX_PERMUTATIONS) -> float:
    """Share of orderings of ``measured`` whose Spearman rho with ``predicted`` reaches ``rho``."""
    measured = np.asarray(measured, float)
    if math.factorial(len(measured)) <= limit:
        perms = itertools.permutations(measured)
    else:
        rng = np.random.default_rng(0)
        perms = (rng.permutation(measured) for _ in range(limit))
    rhos = np.array([stats.spearmanr(predicted, p).statistic for p in perms])
    return float(np.mean(rhos >= rho - 1e-12))


def e6_order(study: Study, policy: str, t: Theory) -> Measure | None:
    runs = estimator_runs(study, policy)
    # a row with its own cap (dapo_uncapped) is another cap of an estimator already ranked, with the same
    # prediction: a second point of it would count one estimator twice
    runs = runs[[estimators.spec(run_estimator(r)).max_redraws is None for _, r in runs.iterrows()]]
    if len(runs) < 3:
        return None
    measured = {run_estimator(r): [m[-1].mean() for m in study.measured(policy, r["run"])] for _, r in runs.iterrows()}
    predicted = {run_estimator(r): [p[-1].mean() for p in study.trajectory(policy, r["run"], t)] for _, r in runs.iterrows()}
    names = list(measured)
    n_seeds = min(len(v) for v in measured.values())
    rhos = [stats.spearmanr([predicted[k][s] for k in names], [measured[k][s] for k in names]).statistic
            for s in range(n_seeds)]
    mean_m = [float(np.mean(measured[k])) for k in names]
    mean_p = [float(np.mean(predicted[k])) for k in names]
    share = permutation_share(mean_p, mean_m, float(np.nanmean(rhos)))
    return measure(rhos, f"{len(names)} estimators; share of shuffled orderings reaching rho: {fmt(share)}; "
                   "predicted/measured final PoS: "
                   + ", ".join(f"{k} {fmt(p)}/{fmt(m)}" for k, p, m in zip(names, mean_p, mean_m)))


# (first, second, predicted beta_eff(first)/beta_eff(second) at G, why): docs/theory.md E6's exact rescalings
RESCALINGS = (
    ("rloo", "dr_grpo", lambda G: (G - 1) / G, "RLOO's A = G/(G-1) x Dr. GRPO's"),
    ("verl", "grpo", lambda G: math.sqrt(G / (G - 1)), "sample std = sqrt(G/(G-1)) x population std"),
)


def _fit_beta(study: Study, policy: str, run: str, under: str, base: dict) -> np.ndarray:
    """beta_eff per seed of ``run``'s measured trajectory, fitted with estimator ``under``'s C3_G."""
    est = estimators.resolve(under, base["norm"], base["std"], float(base["eps"]))
    kw = dict(kl=base["kl"], beta_prev=float(base["beta_prev"]), group_size=int(base["group_size"]),
              **est.theory_kwargs())
    return np.array([theory.fit_effective_beta(m[0], m, **kw)[0] for m in study.measured(policy, run)])


def e6_rescale(study: Study, policy: str, t: Theory) -> Measure | None:
    runs = estimator_runs(study, policy)
    if runs.empty:
        return None
    by_name = {run_estimator(r): r for _, r in runs.iterrows()}
    errors, notes = [], []
    for first, second, factor, why in RESCALINGS:
        if first not in by_name or second not in by_name:
            continue
        base = by_name[second].to_dict()
        if base["kl"] not in ("ref", "mirror") or (second == "grpo" and (base["norm"] != "mean_std" or base["eps"] != 0)):
            continue  # the rescaling is exact for a one-term penalty and GRPO's eps = 0 only
        G = int(base["group_size"])
        ratio = (_fit_beta(study, policy, by_name[first]["run"], second, base)
                 / _fit_beta(study, policy, by_name[second]["run"], second, base))
        predicted = 1.0 if t.null else factor(G)
        errors.append(np.abs(ratio / predicted - 1.0))
        notes.append(f"{first}/{second} {fmt(float(np.mean(ratio)))} (predicted {fmt(factor(G))}: {why})")
    if not errors:
        return None
    return measure(np.max(np.vstack(errors), axis=0), f"beta_eff ratios fitted with the second's C3_G, G as run: "
                   + "; ".join(notes))


# --------------------------------------------------------------------------- E6d, E6e: dynamic sampling (DAPO)
def dynamic_sampling_runs(study: Study, policy: str) -> dict[str, pd.Series]:
    """The estimator sweep's runs with dynamic sampling, by estimator name (dapo, dapo_uncapped)."""
    runs = estimator_runs(study, policy)
    return {run_estimator(r): r for _, r in runs.iterrows() if estimators.spec(run_estimator(r)).dynamic_sampling}


def _uncapped(runs: dict[str, pd.Series]) -> str | None:
    """The run the theory's (uncapped) prediction is about: a row with its own cap (dapo_uncapped)."""
    return next((name for name in runs if estimators.spec(name).max_redraws is not None), None)


def _no_spread(law: str, p: np.ndarray, G: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, 1 - a): a group's chance of no spread under ``law`` and its complement Z, each end accurate."""
    log_p, log_q = np.log(p), np.log1p(-p)
    if law == "no_all_wrong":   # Z = 1 - p^G: only all-correct groups are redrawn
        return np.exp(G * log_p), -np.expm1(G * log_p)
    if law == "no_all_right":   # Z = 1 - (1-p)^G: only all-wrong groups are redrawn
        return np.exp(G * log_q), -np.expm1(G * log_q)
    hi, lo = np.maximum(log_p, log_q), np.minimum(log_p, log_q)
    return np.exp(G * hi) + np.exp(G * lo), -np.expm1(G * hi) - np.exp(G * lo)


def redraw_moments(p_prev, p_ref, group_size: int, max_redraws, groups: int = 1,
                   law: str = "geometric") -> tuple[np.ndarray, np.ndarray]:
    """(mean, variance) of a question's redraws in one iteration under ``law`` (``REDRAW_LAWS``).

    docs/theory.md E6: a group of pi_{n-1} has spread with probability Z = 1 - p^G - (1-p)^G, so the groups
    drawn again before one with spread are X ~ Geometric (P(X >= k) = a^k, a = 1 - Z) and the trainer
    records Y = min(X, R) (R = estimator.max_redraws; E[Y] -> 1/Z - 1 uncapped). Closed forms of the
    truncated sums: E[Y] = sum_{k=1..R} a^k, E[Y^2] = sum_{k=1..R} (2k - 1) a^k. ``groups`` = m groups
    per question, each redrawn on its own: m times both.
    """
    p = np.asarray(p_ref if law == "at_p_ref" else p_prev, float)
    R = np.asarray(max_redraws, float)
    a, z = _no_spread("geometric" if law in ("at_p_ref", "bernoulli") else law, p, group_size)
    if law == "bernoulli":  # one redraw at most: Y = 1[the first group has no spread]
        return groups * a, groups * a * (1 - a)
    a_r = np.exp(R * np.log(a))
    s0 = a * (1 - a_r) / z                                   # sum_{k<=R} a^k
    s1 = a * (1 - (R + 1) * a_r + R * a_r * a) / z ** 2      # sum_{k<=R} k a^k
    return groups * s0, groups * (2 * s1 - s0 - s0 ** 2)


# law -> the wrong theory's name (E6d's power); "geometric" is the theory's own
REDRAW_LAWS = {
    "geometric": "Geometric(Z) at p_n-1, Z = 1 - p^G - (1-p)^G",
    "no_all_wrong": "Z without the (1-p)^G term (all-wrong groups kept)",
    "no_all_right": "Z without the p^G term (all-correct groups kept)",
    "bernoulli": "one redraw at most (Bernoulli(1 - Z), not Geometric)",
    "at_p_ref": "Z at p_ref (groups from pi_ref, not pi_n-1)",
}


def redraw_wrong(right: Theory) -> tuple[Theory, ...]:
    return tuple(replace(right, name=name, redraw_law=law) for law, name in REDRAW_LAWS.items() if law != "geometric")


def _redraw_checks(study: Study, policy: str, run: str) -> pd.DataFrame:
    """redraws.csv of one run beside p_n-1 (the policy the groups came from) and p_ref, train questions."""
    pos = study.train_rows(policy, run).set_index(["seed", "question", "iteration"])["pos"].sort_index()
    p_prev = pos.groupby(level=["seed", "question"]).shift(1).rename("p_prev")
    p_ref = pos.xs(0, level="iteration").rename("p_ref")
    df = (study.redraws[(policy, run)].join(p_prev, on=["seed", "question", "iteration"])
          .join(p_ref, on=["seed", "question"]))
    edge = TOLERANCE["degenerate_p"]  # at p = 0 or 1 exactly the redraws never end: no prediction
    return df[df["p_prev"].between(edge, 1 - edge) & df["p_ref"].between(edge, 1 - edge)]


def e6_redraws(study: Study, policy: str, t: Theory) -> Measure | None:
    """E6d: dynamic sampling's redraws per (question, iteration) against the law at p_n-1. Each count is
    standardised by the law's own mean and SD there, and per seed z = sum of those residuals / sqrt(n) (about
    N(0, 1) where the law is right: hundreds of independent counts); the value is the RMS of z over seeds.
    Standardising each count keeps the hard questions' few redraws from drowning in the easy ones' many
    (a law that forgets the all-wrong groups is caught on the former). The uncapped run where the scale has
    one (the theory's prediction; the truncated law keeps a cap exact), else the capped one: not both, they
    share their seeds and so their draws."""
    runs = dynamic_sampling_runs(study, policy)
    name = _uncapped(runs) or next(iter(runs), None)
    if name is None or (policy, runs[name]["run"]) not in study.redraws:
        return None
    r = runs[name]
    df = _redraw_checks(study, policy, r["run"])
    mean, var = redraw_moments(df["p_prev"].to_numpy(), df["p_ref"].to_numpy(), int(r["group_size"]),
                               df["max_redraws"].to_numpy(), int(r["groups_per_question"]), t.redraw_law)
    y = df["redraws"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):  # SD 0 (a count the law says is certain): 0 or inf
        residual = np.where(var > 0, (y - mean) / np.sqrt(var), np.where(y == mean, 0.0, np.inf))
    df = df.assign(mean=mean, residual=residual)
    per_seed = df.groupby("seed").agg(measured=("redraws", "mean"), predicted=("mean", "mean"),
                                      total=("residual", "sum"), n=("residual", "size"))
    z = (per_seed["total"] / np.sqrt(per_seed["n"])).to_numpy()
    value = float(np.sqrt(np.mean(z ** 2)))
    raw = study.redraws[(policy, r["run"])]
    evidence = (f"run {r['run']} (cap {int(raw['max_redraws'].iloc[0])}), law {REDRAW_LAWS[t.redraw_law]}; "
                f"{len(df)} (question, iteration, seed) with 0 < p_n-1 < 1; mean redraws measured/predicted per seed: "
                + ", ".join(f"{fmt(row.measured)}/{fmt(row.predicted)}" for row in per_seed.itertuples())
                + f"; z per seed: {', '.join(fmt(v) for v in z)}; largest {int(raw['redraws'].max())}, "
                f"dropped {int(raw['dropped'].sum())}")
    return measure([value], evidence, interval=(value, value, value), n_seeds=len(z))


def _runaway_sides(study: Study, policy: str, r, dynamic_sampling: bool) -> tuple[list[float], str]:
    """Per seed: the share of the runaway basin's questions (C3_G's limit from the measured p_ref is 1) whose
    final PoS lies nearer C3_G's p_N than the p_N of the same estimator without dynamic sampling's 1/Z
    (``dynamic_sampling``=False: nearer the latter). Only questions whose two predictions at N differ by more
    than C4's limit gap (0.05) decide. Evidence: the basin, and the other questions' gap to C3_G."""
    est = estimators.resolve(run_estimator(r), r["norm"], r["std"], float(r["eps"]))
    kw = dict(kl=r["kl"], beta=float(r["beta"]), beta_prev=float(r["beta_prev"]), group_size=int(r["group_size"]),
              **est.theory_kwargs())
    plain = dict(kw, dynamic_sampling=False)
    shares, n_basin, n_decide, off_basin = [], [], [], []
    for m in study.measured(policy, r["run"]):
        p_ref, p_n, n = m[0], m[-1], len(m) - 1
        basin = theory.predicted_limit(p_ref, **kw) == 1.0
        with_z, without_z = theory.pos_recurrence(p_ref, n, **kw)[-1], theory.pos_recurrence(p_ref, n, **plain)[-1]
        decides = basin & (np.abs(with_z - without_z) > TOLERANCE["limit_gap"])
        nearer = np.abs(p_n - with_z) < np.abs(p_n - without_z)
        shares.append(float(np.mean(nearer[decides] == dynamic_sampling)) if decides.any() else np.nan)
        n_basin.append(int(basin.sum()))
        n_decide.append(int(decides.sum()))
        off_basin.append(float(np.mean(np.abs(p_n - with_z)[~basin])) if (~basin).any() else np.nan)
    notes = (f"basin {n_basin[0]} of {len(m[0])} questions (seed 0), {n_decide[0]} decide; outside it mean |p_N - "
             f"C3_G p_N| {fmt(float(np.nanmean(off_basin)))}")
    return shares, notes


def e6_runaway(study: Study, policy: str, t: Theory) -> Measure | None:
    """E6e: uncapped dynamic sampling defeats the KL anchor (docs/theory.md E6): from the basin where C3_G's
    orbit runs to p = 1, the final PoS ends nearer C3_G's p_N than the anchored p_N of the estimator without
    1/Z (the wrong theory "no dynamic-sampling factor"; its value on the same questions is the complement).
    The uncapped run (dapo_uncapped) is judged; the capped one (dapo) and each run's drops are evidence."""
    runs = dynamic_sampling_runs(study, policy)
    name = _uncapped(runs)
    if name is None or runs[name]["kl"] != "ref":
        return None
    def drops(r) -> str:
        key = (policy, r["run"])
        if key not in study.redraws:
            return "no redraws (exact objective)"
        df = _redraw_checks(study, policy, r["run"])
        hard = int(df.loc[df["p_prev"] < 0.5, "dropped"].sum())  # the cap bites at both ends of p_n-1
        return (f"dropped {int(df['dropped'].sum())} of {len(df)} (question, iteration, seed) ({hard} at p_n-1 < 0.5), "
                f"largest redraws {int(df['redraws'].max())}")

    shares, notes = _runaway_sides(study, policy, runs[name], t.dynamic_sampling)
    evidence = [f"run {runs[name]['run']}: {notes}, {drops(runs[name])}"]
    for other, r in runs.items():
        if other != name and r["kl"] == "ref":
            capped, _ = _runaway_sides(study, policy, r, t.dynamic_sampling)
            evidence.append(f"capped run {r['run']}: share {fmt(float(np.nanmean(capped)))}, {drops(r)}")
    return measure(shares, "; ".join(evidence))
