"""The output contract: the columns of every file one rule writes and a later rule reads.

README's "Output contract" documents the same; ``io.read_csv(path, COLUMNS)`` enforces it.
"""

from dataclasses import dataclass, field, fields

from grpo_amp import registry

NAN = float("nan")

# results/{scale}/pos/{policy}/{run}.csv: one row per question and iteration.
# ``seed`` is the training seed of the row (a sampled policy's run repeats over seeds; see runs.seeds_of).
POS_COLUMNS = ["question", "seed", "split", "iteration", "pos", "pos_lo", "pos_hi", "method",
               "kl_in_correct",  # C2: KL(pi_n | correct || pi_ref | correct), each renormalised
               "n_correct"]      # the size of the question's correct set (NaN where answers cannot be listed)

# results/{scale}/predict/{policy}/{run}.csv: the measured PoS beside C3 from the measured p_ref.
PREDICT_COLUMNS = ["question", "seed", "split", "iteration", "p_ref", "pos", "pos_lo", "pos_hi", "kl_in_correct",
                   "n_correct",
                   "pred_trajectory",    # C3 iterated from p_ref (population limit)
                   "pred_one_step",      # C3 applied to the measured p_{n-1}
                   "pred_trajectory_G",  # the same with E1's finite-group S_G
                   "pred_one_step_G",
                   "pred_limit"]         # predicted_limit(p_ref): what the trajectory tends to

# results/{scale}/curves/{policy}/{run}.csv: the run's C3 on a grid of p (predict.curves_frame).
CURVE_COLUMNS = ["p", "step_gain", "limit", "step_gain_G", "limit_G"]

# results/{scale}/train/{policy}/{run}/metrics.csv: one row per iteration of training.
# seed -1: the policy trains several seeds in one table (tabular), so the row is pooled over them.
# inner_steps_taken: grpo_update's optimiser steps in the iteration (grpo.inner_steps, or more
# where grpo.inner_tol lets them go on: the transformer control); NaN for the closed forms and E5's rungs.
@dataclass(frozen=True)
class IterationMetrics:
    """What one GRPO iteration reports: every update (grpo.updates.LOOPS) and TRL's loop return one.

    NaN where a quantity has no meaning for the update (the closed forms have no loss, no sample).
    """
    loss: float
    pg_objective: float
    kl_ref: float
    kl_prev: float
    mean_reward: float
    zero_spread_frac: float
    clip_frac: float
    inner_steps_taken: float
    # argmax_*: the transformer's exact rungs (grpo.lm_rungs), NaN elsewhere: L-BFGS iterations taken, the largest
    # move of a train question's p over its last 10 iterations (the tolerance reached), the objective's gradient
    # norm at the end, objective_deficit = mean_q (free table's maximum - the transformer's objective) >= 0, and
    # other_mass = the mass outside the listed answer-shaped outputs.
    argmax_iters: float = NAN
    argmax_tol_reached: float = NAN
    argmax_grad_norm: float = NAN
    objective_deficit: float = NAN
    other_mass: float = NAN
    # dynamic sampling only (docs/theory.md E6): per question (question, redraws, dropped), the groups drawn
    # again and whether it sat the iteration out; a table, not a metric: it goes to redraws.csv (REDRAWS_COLUMNS)
    redraws: "pd.DataFrame | None" = field(default=None, compare=False, repr=False)  # noqa: F821 (pandas not imported here)

    def values(self) -> dict:
        """The metrics.csv numbers, by name (ITERATION_METRICS)."""
        return {name: getattr(self, name) for name in ITERATION_METRICS}

    @classmethod
    def undefined(cls) -> "IterationMetrics":
        """Every value NaN: an update with no sample and no objective (C2's closed form)."""
        return cls(**dict.fromkeys(ITERATION_METRICS, float("nan")))


ITERATION_METRICS = tuple(f.name for f in fields(IterationMetrics) if f.name != "redraws")
ARGMAX_METRICS = ["argmax_iters", "argmax_tol_reached", "argmax_grad_norm", "objective_deficit", "other_mass"]
TRAIN_METRICS_COLUMNS = ["seed", "iteration", *ITERATION_METRICS]
# results/{scale}/train/{policy}/{run}/timing.csv: wall seconds per iteration, kept out of metrics.csv
# so that every data file is byte-identical between two runs of the same config on one machine.
TIMING_COLUMNS = ["seed", "iteration", "seconds"]

# results/{scale}/train/{policy}/{run}/c1.csv: C1's sampled surrogate with fresh groups of pi_{n-1}
# and the ratio pi_n/pi_{n-1}; compare puts the closed form w+_G p_n - w-_G (1 - p_n) beside it.
C1_COLUMNS = ["question", "seed", "iteration", "surrogate", "surrogate_se", "n_groups"]

# results/{scale}/train/{policy}/{run}/e3_controls.csv (a policy another one is a control of: transformer): per
# seed, E3's tempering control (grpo.e3_controls.tempered_reference): T matched to the train entropy drop, p per split
E3_CONTROL_COLUMNS = ["seed", "temperature", "entropy_ref", "entropy_n", "train_p_ref", "train_p_tempered", "train_p_n",
                      "heldout_p_ref", "heldout_p_tempered", "heldout_p_n"]

# results/{scale}/train/{policy}/{run}/redraws.csv (estimator with dynamic sampling, docs/theory.md E6):
# per question and iteration, the groups drawn again because all G rewards were equal (uncapped mean
# 1/Z - 1 per group, Z = 1 - p^G - (1-p)^G) and whether it sat the iteration out (estimator.max_redraws hit).
REDRAWS_COLUMNS = ["question", "seed", "iteration", "redraws", "dropped"]

# results/{scale}/runs.csv: one row per (policy, run) with its settings and summary numbers.
# Every summary X is the mean over the run's seeds, with X_lo, X_hi its 95% t-interval over seeds
# (equal to X where the run has one seed).
# bias, bias_G: the signed mean of p_n - C3 (C3_G) trajectory beside the absolute gap (negative: under-amplifies)
SUMMARY_NUMBERS = ["final_pos_mean", "pred_final_mean", "gap_trajectory", "gap_one_step",
                   "gap_trajectory_G", "gap_one_step_G", "bias", "bias_G", "heldout_gain", "beta_eff", "beta_eff_rmse",
                   # E6's shape test (theory.shape_test): log-odds steps against S_G(p_{n-1}), slope 1/beta_eff and R^2
                   "shape_slope", "shape_r2"]
# the variant's fields, then every sweep of grpo_amp.registry.SWEEP_TABLE (beta is the variant's), the iterations
RUN_SETTINGS = ["variant", "sweep", "norm", "kl", "beta", "beta_prev", "eps", "std",
                *[s.name for s in registry.SWEEP_TABLE if s.name != "beta" and s.column], "iterations"]
RUN_COLUMNS = (["policy", "run", *RUN_SETTINGS, "n_seeds"]
               + [c for x in SUMMARY_NUMBERS for c in (x, f"{x}_lo", f"{x}_hi")])

# results/{scale}/claims.csv: one row per claim id and policy that tests it.
# value_lo/value_hi: the value's 95% interval over seeds (equal to value for a deterministic policy).
# criterion: "<=" or ">=" (how value compares with tolerance; "" for a measurement with no verdict);
# power: "k/n", how many of the row's wrong theories the same check rejects on the same data.
CLAIM_COLUMNS = ["claim", "policy", "verdict", "criterion", "metric", "value", "value_lo", "value_hi", "n_seeds",
                 "tolerance", "power", "evidence"]
VERDICTS = ("holds", "fails", "inconclusive", "no power", "measured")  # grpo_amp.analysis.stats.row_verdict

# results/{scale}/iterations.csv: one row per (policy, run, iteration), means over train questions and seeds
# (stages.compare.iteration_metrics, the numbers MLflow gets per step). abs_err_trajectory at n is
# E_q |p_n(q) - C3's p_n(q)|; its mean over n >= 1 is runs.csv's gap_trajectory and the ladder's gap.
ITERATION_COLUMNS = ["policy", "run", "iteration", "pos_mean", "pos_q10", "pos_q50", "pos_q90", "pred_trajectory_mean",
                     "abs_err_trajectory", "abs_err_one_step", "abs_err_trajectory_G", "heldout_pos_mean"]

# results/{scale}/ladder.csv: E5's gap ladder, one row per (rung, run); see grpo_amp.analysis.ladder.
# questions: the question set the row was measured on (grpo_amp.analysis.ladder.QUESTIONS); a parent is on the same set.
LADDER_COLUMNS = ["rung", "policy", "run", "questions", "n_seeds", "gap", "gap_lo", "gap_hi", "gap_G", "gap_G_lo", "gap_G_hi",
                  "bias", "bias_lo", "bias_hi", "bias_G", "bias_G_lo", "bias_G_hi",
                  "parent", "part", "part_lo", "part_hi", "cause",
                  # a transformer row's counterpart on its tabular twin (same questions) and gap - twin's gap, with
                  # its Welch interval: what the shared parameters add (grpo_amp.analysis.ladder.TWIN_OF); empty elsewhere
                  "twin", "vs_twin", "vs_twin_lo", "vs_twin_hi"]

# results/{scale}/factorial.csv: E5's tabular ladder as a 2 x 2 x 2 factorial, one row per (variant, cell);
# the factors' levels are registry.FACTORS; gap = mean |p_n - C3|, bias = mean (p_n - C3) (train, n >= 1),
# each the mean over the cell's seeds with its 95% interval; see grpo_amp.analysis.factorial.
FACTORIAL_COLUMNS = ["variant", "advantage", "optimiser", "objective", "policy", "rung", "gap", "gap_lo", "gap_hi",
                     "bias", "bias_lo", "bias_hi", "n_seeds"]
# results/{scale}/attribution.csv: per variant, each factor's main effect and Shapley (order-averaged) part,
# each interaction's effect, and the total (R6's gap - R1's = the sum of the three Shapley parts, and of the three
# chain parts: the marginal changes in the ladder's order R1 -> R2 -> R3 -> R6), paired over seeds.
ATTRIBUTION_COLUMNS = ["variant", "factor", "kind", "effect", "effect_lo", "effect_hi", "shapley", "shapley_lo",
                       "shapley_hi", "chain", "chain_lo", "chain_hi", "n_seeds"]

# results/{scale}/draws.csv: one row per (policy, metric) of the study's draw policies (StudyConfig.draw_policies)
# over its task draws (draw 0 = the study's own task and pi_ref; draw k its reference/{family}-draw{k}): per_draw
# = each draw's mean over its seeds (|-joined, draw 0 first); mean with lo/hi its 95% t interval over the draw
# means (n_draws - 1 degrees of freedom); between_draw_sd their SD; within_draw_sd the pooled SD of seeds about
# their draw's mean. metric: final_pos, gap, gap_G, bias, bias_G, gap_vs_<twin policy>. See grpo_amp.analysis.draws.
DRAWS_COLUMNS = ["policy", "run", "metric", "n_draws", "n_seeds", "per_draw", "mean", "lo", "hi", "between_draw_sd",
                 "within_draw_sd"]
