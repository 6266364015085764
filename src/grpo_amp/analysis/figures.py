"""The study's figures, drawn only from files earlier rules wrote and the figures rule hands over: runs.csv,
ladder.csv, attribution.csv, the predict CSVs and the curves CSVs (C3 on a grid of p, written by ``predict``).

No torch, no training and no theory here: every number on a figure was written by an earlier rule, and
every file is named by the rule (``Sources``): nothing here builds a path.

    from grpo_amp.analysis import figures
    list(figures.FIGURES)  # trajectories, per_question, fixed_points, ...
    figures.make_figure("trajectories", sources, "results/default/figures/trajectories.png")

``FIGURES`` maps a figure name to a function ``(src, runs) -> Figure`` where ``src`` is the ``Sources``
and ``runs`` is its runs.csv. A panel is drawn only where it has data; a figure with no data at all at a
scale still renders, as a short "no data at this scale" message, so a scale that skips a sweep never
breaks the pipeline. Panels wrap into rows (``MAX_COLUMNS``, ``MAX_WIDTH_IN``) so no figure is wider than
2400 px. The claim each figure tests (docs/theory.md ids) is in its docstring and in
workflows/report/{name}.rst, which says what to look at: the figures carry no title of their own.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullLocator

from scipy.special import logit

from grpo_amp import registry
from grpo_amp.estimators import ESTIMATOR_NAMES
from grpo_amp.io import InputError, atomic_path, read_csv
from grpo_amp.schema import ATTRIBUTION_COLUMNS, CURVE_COLUMNS, LADDER_COLUMNS, PREDICT_COLUMNS, RUN_COLUMNS
from grpo_amp.analysis.claims.e6 import run_estimator
from grpo_amp.analysis.stats import seed_interval

DPI = 120
P_CLIP = 1e-6            # probabilities are clipped to [P_CLIP, 1 - P_CLIP] before a logit
MAX_POINTS = 20_000      # scatter points per panel (a seeded subsample beyond this)
POLICY_ORDER = registry.POLICY_NAMES
KL_ORDER = ("ref", "mirror", "both")
NO_DATA = "no data at this scale"
MAX_COLUMNS = 4       # panels per row before a figure wraps
MAX_WIDTH_IN = 18.0   # the panels' width in inches at most: 2160 px at DPI 120, under 2400 px with the margins
# Line styles shared by every figure: measured (with its CI band) vs the two C3 predictions.
MEASURED = dict(linestyle="-", marker="o", markersize=3)
PREDICTED = dict(linestyle="--", marker=None)
PREDICTED_G = dict(linestyle=":", marker=None)
STYLE_LEGEND = {"measured (band: mean CI)": MEASURED, "C3 prediction": PREDICTED,
                "C3 with finite G (E1)": PREDICTED_G}


# --------------------------------------------------------------------------- the files
@dataclass(frozen=True)
class Sources:
    """The files the figures rule hands over (workflows/rules/report.smk): the figures read these only.

    ``predict`` and ``curves`` map (policy, run) to that run's predict and curves CSV. ``ladder`` and
    ``attribution`` may be None (a scale without E5's rungs): their figures then say so.
    """
    runs: Path
    predict: Mapping[tuple[str, str], Path]
    curves: Mapping[tuple[str, str], Path]
    ladder: Path | None = None
    attribution: Path | None = None

    def of(self, kind: str, policy: str, run: str) -> Path:
        files = getattr(self, kind)
        if (policy, run) not in files:
            raise InputError(f"runs.csv names the run {policy}/{run} but the figures rule handed over no {kind} "
                             f"file for it")
        return Path(files[(policy, run)])


# --------------------------------------------------------------------------- small helpers
@contextlib.contextmanager
def _theme() -> Iterator[None]:
    """seaborn's whitegrid theme with readable fonts, undone on exit."""
    with matplotlib.rc_context():
        sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)
        yield


def _themed(func: Callable[[Sources, pd.DataFrame], Figure]) -> Callable[[Sources, pd.DataFrame], Figure]:
    @functools.wraps(func)
    def draw(src: Sources, runs: pd.DataFrame) -> Figure:
        with _theme():
            return func(src, runs)
    return draw


def _new_figure(nrows: int = 1, ncols: int = 1, panel: tuple[float, float] = (3.6, 2.8),
                **subplot_kw) -> tuple[Figure, np.ndarray]:
    """A Figure on an Agg canvas (no pyplot state) and its (nrows, ncols) array of axes."""
    fig = Figure(figsize=(panel[0] * ncols + 0.4, panel[1] * nrows + 0.6), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)


def grid_shape(n: int, panel_width: float, max_columns: int = MAX_COLUMNS) -> tuple[int, int]:
    """(rows, columns) for ``n`` panels: at most ``max_columns`` a row and ``MAX_WIDTH_IN`` inches of panels."""
    ncols = max(1, min(n, max_columns, int(MAX_WIDTH_IN // panel_width)))
    return -(-n // ncols), ncols


def _grid(n: int, panel: tuple[float, float] = (3.6, 2.8), max_columns: int = MAX_COLUMNS,
          **subplot_kw) -> tuple[Figure, list]:
    """A figure of ``n`` panels wrapped into rows (``grid_shape``); the grid's unused cells are removed.
    Returns the figure and its ``n`` axes in reading order."""
    panel = (min(panel[0], MAX_WIDTH_IN), panel[1])
    nrows, ncols = grid_shape(n, panel[0], max_columns)
    fig, axes = _new_figure(nrows, ncols, panel, **subplot_kw)
    for ax in axes.flat[n:]:
        ax.remove()
    return fig, list(axes.flat[:n])


def pack_rows(widths: Sequence[float], max_width: float = MAX_WIDTH_IN) -> list[list[int]]:
    """Panels of unequal widths (inches) packed into rows in reading order, each row at most ``max_width``
    wide (a panel wider than that gets a row of its own)."""
    rows: list[list[int]] = [[]]
    for i, w in enumerate(widths):
        if rows[-1] and sum(widths[j] for j in rows[-1]) + w > max_width:
            rows.append([])
        rows[-1].append(i)
    return rows


def _packed(widths: Sequence[float], height: float) -> tuple[Figure, list]:
    """A figure of panels of their own widths (``pack_rows``), sharing one y axis; axes in reading order."""
    widths = [min(w, MAX_WIDTH_IN) for w in widths]
    rows = pack_rows(widths)
    fig = Figure(figsize=(max(sum(widths[j] for j in row) for row in rows) + 0.4, height * len(rows) + 0.6), dpi=DPI)
    FigureCanvasAgg(fig)
    outer = fig.add_gridspec(len(rows), 1)
    axes: list = []
    for r, row in enumerate(rows):
        total = sum(widths[j] for j in row)
        room = max(sum(widths[j] for j in rw) for rw in rows)
        # the row's panels at their widths, the rest of the row left empty
        ratios = [widths[j] for j in row] + ([room - total] if room - total > 1e-9 else [])
        inner = outer[r].subgridspec(1, len(ratios), width_ratios=ratios)
        for k in range(len(row)):
            axes.append(fig.add_subplot(inner[0, k], sharey=axes[0] if axes else None))
    return fig, axes


def _message(ax, text: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True, color="0.35")


def _message_figure(title: str, text: str = NO_DATA) -> Figure:
    """The figure of a scale with no data for it at all: Snakemake still needs its PNG."""
    fig, axes = _new_figure(panel=(6.0, 2.0))
    _message(axes[0, 0], text)
    axes[0, 0].set_title(title)
    fig.tight_layout()
    return fig


def _logit(p) -> np.ndarray:
    return logit(np.clip(np.asarray(p, dtype=float), P_CLIP, 1.0 - P_CLIP))


def _ordered(values: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """Unique ``values``: the ``preferred`` ones in that order, then the rest in order of appearance."""
    present = list(dict.fromkeys(values))
    return [v for v in preferred if v in present] + [v for v in present if v not in preferred]


def _policies(df: pd.DataFrame) -> list[str]:
    return _ordered(df["policy"], POLICY_ORDER)


def _palette(labels: Sequence, name: str = "colorblind") -> dict:
    return dict(zip(labels, sns.color_palette(name, max(len(labels), 1))))


def _policy_palette(policies: Sequence[str]) -> dict:
    """The same colour for a policy in every figure, whichever policies a scale has."""
    full = _palette(_ordered([*POLICY_ORDER, *policies], POLICY_ORDER))
    return {p: full[p] for p in policies}


def _sample(df: pd.DataFrame, n: int = MAX_POINTS) -> pd.DataFrame:
    return df.sample(n, random_state=0) if len(df) > n else df


def _finish(fig: Figure, colors: dict | None = None, styles: dict | None = None) -> Figure:
    """Tight layout, then (if any) the figure-level legend: the last steps of every figure. No title: the
    caption (workflows/report/<name>.rst) says what the figure shows."""
    fig.tight_layout()
    if colors or styles:
        _legend(fig, colors, styles)
    return fig


def _legend(fig: Figure, colors: dict | None = None, styles: dict | None = None) -> None:
    """One figure-level legend above the panels (it adds height, not width): a colour per label, then the
    line styles."""
    handles = [Line2D([], [], color=c, lw=2, label=str(k)) for k, c in (colors or {}).items()]
    handles += [Line2D([], [], label=k, **{"color": "0.3", **s}) for k, s in (styles or {}).items()]
    if handles:
        fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False,
                   ncol=min(len(handles), 4), fontsize="small")


def _iteration_axis(ax, xlabel: str = "iteration") -> None:
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _has_finite_group(row) -> bool:
    """A policy that samples groups: its finite-G prediction (E1) is drawn beside the population one."""
    return row.policy in registry.SAMPLED_POLICIES and pd.notna(row.group_size)


def load_curves(src: Sources, row) -> pd.DataFrame:
    """The run's C3 on a grid of p (predict's curves file)."""
    return read_csv(src.of("curves", row.policy, row.run), CURVE_COLUMNS)


# --------------------------------------------------------------------------- loading
def plain_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The plain variant runs (no swept knob)."""
    return runs[runs["sweep"] == "variant"]


def sweep_runs(runs: pd.DataFrame, sweep: str) -> pd.DataFrame:
    """The runs of one sweep plus, per policy, its base run (the sweep's default point).

    Adds a ``value`` column: the swept setting (the runs.csv column of the same name).
    """
    swept = runs[runs["sweep"] == sweep]
    bases = set(zip(swept["policy"], swept["variant"]))
    plain = plain_runs(runs)
    base = plain[[key in bases for key in zip(plain["policy"], plain["run"])]]
    out = pd.concat([base, swept], ignore_index=True)
    return out.assign(value=out[sweep]).sort_values(["policy", "value"], na_position="first")


def load_predict(src: Sources, runs: pd.DataFrame) -> pd.DataFrame:
    """The predict CSVs of ``runs`` in one frame, with every runs.csv column joined on (policy, run)."""
    frames = [read_csv(src.of("predict", row.policy, row.run), PREDICT_COLUMNS)
              .assign(policy=row.policy, run=row.run) for row in runs.itertuples(index=False)]
    if not frames:
        return pd.DataFrame(columns=PREDICT_COLUMNS + RUN_COLUMNS)
    settings = runs.drop_duplicates(["policy", "run"])
    return pd.concat(frames, ignore_index=True).merge(settings, on=["policy", "run"], how="left")


def _train(pred: pd.DataFrame) -> pd.DataFrame:
    return pred[pred["split"] == "train"]


def _plot_trajectory(ax, df: pd.DataFrame, color, predictions: bool = True) -> None:
    """Mean over questions per iteration: measured pos with the mean CI band, and C3's predictions
    (the finite-G one for practice policies only: the exact control has no groups)."""
    m = df.groupby("iteration")[["pos", "pos_lo", "pos_hi", "pred_trajectory", "pred_trajectory_G"]].mean()
    by_seed = df.groupby(["iteration", "seed"])["pos"].mean().groupby(level="iteration")
    if df["seed"].nunique() > 1:  # the band: the 95% interval of the mean over seeds
        band = by_seed.apply(lambda x: pd.Series(seed_interval(x)[1:], index=["lo", "hi"])).unstack()
        m["pos_lo"], m["pos_hi"] = band["lo"], band["hi"]
    ax.fill_between(m.index, m["pos_lo"], m["pos_hi"], color=color, alpha=0.2, lw=0)
    ax.plot(m.index, m["pos"], color=color, **MEASURED)
    practice = df["policy"].isin(registry.SAMPLED_POLICIES).all()
    for col, style, show in (("pred_trajectory", PREDICTED, predictions),
                             ("pred_trajectory_G", PREDICTED_G, predictions and practice)):
        if show and m[col].notna().any():
            ax.plot(m.index, m[col], color=color, **style)


# --------------------------------------------------------------------------- the figures
def trajectory_panels(pred: pd.DataFrame) -> list[tuple[str, str]]:
    """The (policy, run) panels of ``trajectories``: the pairs with train rows, in policy order then run
    order (a policy that did not run a variant gets no panel)."""
    pairs = pred.loc[pred["split"] == "train", ["policy", "run"]].drop_duplicates()
    order = {p: i for i, p in enumerate(_policies(pairs))} if not pairs.empty else {}
    runs = {r: i for i, r in enumerate(dict.fromkeys(pairs["run"]))}
    return sorted(map(tuple, pairs.to_numpy()), key=lambda pr: (order[pr[0]], runs[pr[1]]))


@_themed
def trajectories(src: Sources, runs: pd.DataFrame) -> Figure:
    """C3: mean measured PoS per iteration beside the predicted trajectories, per (policy, plain run)."""
    plain = plain_runs(runs)
    pred = _train(load_predict(src, plain))
    panels = trajectory_panels(pred)
    if not panels:
        return _message_figure("C3: measured vs predicted PoS trajectories")
    colors = _policy_palette(_ordered([p for p, _ in panels], POLICY_ORDER))
    fig, axes = _grid(len(panels), panel=(2.9, 2.4), max_columns=5, sharey=True)
    for ax, (policy, name) in zip(axes, panels):
        _plot_trajectory(ax, pred[(pred["policy"] == policy) & (pred["run"] == name)], colors[policy])
        ax.set_title(f"{policy}\n{name}", fontsize="small")
        ax.set_ylim(-0.02, 1.02)
        _iteration_axis(ax)
        ax.set_ylabel("PoS" if ax.get_subplotspec().is_first_col() else "")
    return _finish(fig, styles=STYLE_LEGEND)  # the panel titles name the policy: no colour legend


@_themed
def per_question(src: Sources, runs: pd.DataFrame) -> Figure:
    """C3 per question: measured p_n against its one-step and trajectory predictions (n >= 1)."""
    plain = plain_runs(runs)
    if plain.empty:
        return _message_figure("C3 per question: measured p_n vs prediction")
    pred = _train(load_predict(src, plain))
    pred = pred[pred["iteration"] >= 1]
    colors = _policy_palette(_policies(plain))
    fig, axes = _new_figure(1, 2, panel=(4.2, 4.0))
    for ax, (col, label) in zip(axes[0], (("pred_one_step", "one step: C3 from the measured p_{n-1}"),
                                          ("pred_trajectory", "trajectory: C3 iterated from p_ref"))):
        ax.plot([0, 1], [0, 1], color="0.4", lw=1, zorder=0)
        sub = pred[pred[col].notna()]
        gaps = (sub["pos"] - sub[col]).abs().groupby(sub["policy"]).mean()
        labels = {p: f"{p} (mean |gap| {g:.3f})" for p, g in gaps.items()}
        # An equal share of points per policy, drawn in a random order so no policy hides another.
        if not sub.empty:
            points = pd.concat([_sample(g, MAX_POINTS // len(colors)) for _, g in sub.groupby("policy")])
            points = points.sample(frac=1.0, random_state=0).assign(policy=lambda d: d["policy"].map(labels))
            sns.scatterplot(data=points, x=col, y="pos", hue="policy", ax=ax, s=8, alpha=0.35, linewidth=0,
                            palette={labels[p]: c for p, c in colors.items() if p in labels},
                            hue_order=[labels[p] for p in colors if p in labels], rasterized=True)
            ax.legend(fontsize="x-small", markerscale=2, loc="upper left", title=None)
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel=f"predicted ({col})", ylabel="measured p_n",
               title=label)
        ax.set_aspect("equal")
    return _finish(fig)


@_themed
def fixed_points(src: Sources, runs: pd.DataFrame) -> Figure:
    """C4/C7: predicted limit vs p_ref for each beta of the beta sweep, with the measured final PoS."""
    sweep = sweep_runs(runs, "beta")
    if sweep.empty:
        return _message_figure("C4/C7: limit of C3 from p_ref per beta", f"{NO_DATA}: no beta sweep")
    pred = _train(load_predict(src, sweep))
    final = pred[pred["iteration"] == pred.groupby(["policy", "run"])["iteration"].transform("max")]
    policies = _policies(sweep)
    colors = _palette(sorted(set(sweep["beta"])), "viridis")
    fig, axes = _grid(len(policies), panel=(4.2, 4.0))
    for ax, policy in zip(axes, policies):
        ax.plot([0, 1], [0, 1], color="0.5", lw=1)
        for row in sweep[sweep["policy"] == policy].itertuples(index=False):
            color, curves = colors[row.beta], load_curves(src, row)
            ax.plot(curves["p"], curves["limit"], color=color, **PREDICTED)
            if _has_finite_group(row):
                ax.plot(curves["p"], curves["limit_G"], color=color, **PREDICTED_G)
            pts = final[(final["policy"] == policy) & (final["run"] == row.run)]
            ax.scatter(pts["p_ref"], pts["pos"], color=color, s=12, alpha=0.7, edgecolor="white", lw=0.3)
        ax.set(xlim=(0, 1), ylim=(-0.02, 1.02), xlabel="p_ref", ylabel="limit (curve) / final PoS (points)",
               title=policy)
    return _finish(fig, {f"beta={b:g}": c for b, c in colors.items()},
                   {"measured, last iteration": dict(linestyle="", marker="o"), "C3 limit from p_ref": PREDICTED,
                    "C3 limit, finite G (E1)": PREDICTED_G, "p = p_ref (no amplification)": dict(linestyle="-", lw=1)})


@_themed
def normalisation(src: Sources, runs: pd.DataFrame) -> Figure:
    """C5: under kl=ref, logit p_n - logit p_ref = S(p_{n-1})/beta: constant 1/beta for mean_only,
    adaptive (largest at the edges) for mean_std. Left: against p_{n-1}; right: against n."""
    chosen = plain_runs(runs)
    chosen = chosen[chosen["kl"] == "ref"]
    # C5 compares the normalisations: a policy that ran one of them under kl=ref gets no row.
    chosen = chosen[chosen.groupby("policy")["norm"].transform("nunique") > 1]
    if chosen.empty:
        return _message_figure("C5: log-odds gain over p_ref under kl=ref",
                               f"{NO_DATA}: no policy ran mean_std and mean_only under kl=ref")
    pred = _train(load_predict(src, chosen)).sort_values(["policy", "run", "question", "iteration"])
    pred["p_prev"] = pred.groupby(["policy", "run", "seed", "question"])["pos"].shift()
    pred["gain"] = _logit(pred["pos"]) - _logit(pred["p_ref"])
    pred["pred_gain"] = _logit(pred["pred_trajectory"]) - _logit(pred["p_ref"])
    pred["pred_gain_G"] = _logit(pred["pred_trajectory_G"]) - _logit(pred["p_ref"])
    pred = pred[pred["iteration"] >= 1]
    policies, names = _policies(chosen), list(dict.fromkeys(chosen["run"]))
    colors = _palette(names, "deep")
    fig, axes = _new_figure(len(policies), 2, panel=(4.4, 3.0))
    for (left, right), policy in zip(axes, policies):
        for row in chosen[chosen["policy"] == policy].itertuples(index=False):
            sub, color = pred[(pred["policy"] == policy) & (pred["run"] == row.run)], colors[row.run]
            points = _sample(sub)
            left.scatter(points["p_prev"], points["gain"], color=color, s=8, alpha=0.4, lw=0, rasterized=True)
            curves = load_curves(src, row)
            left.plot(curves["p"], curves["step_gain"], color=color, **PREDICTED)
            if _has_finite_group(row):
                left.plot(curves["p"], curves["step_gain_G"], color=color, **PREDICTED_G)
            m = sub.groupby("iteration")[["gain", "pred_gain", "pred_gain_G"]].agg(["mean", "sem"])
            right.errorbar(m.index, m[("gain", "mean")], yerr=m[("gain", "sem")], color=color, **MEASURED)
            for col, style, show in (("pred_gain", PREDICTED, True),
                                     ("pred_gain_G", PREDICTED_G, _has_finite_group(row))):
                if show and m[(col, "mean")].notna().any():
                    right.plot(m.index, m[(col, "mean")], color=color, **style)
        left.set(xlabel="measured p_{n-1}", ylabel="logit p_n - logit p_ref", title=f"{policy}: vs p_{{n-1}}")
        right.set(ylabel="mean logit p_n - logit p_ref", title=f"{policy}: vs iteration (mean +- s.e.)")
        _iteration_axis(right, "iteration n")
    return _finish(fig, colors, {"measured": MEASURED, "C3: S(p)/beta (left), trajectory (right)": PREDICTED,
                                 "the same with finite G (E1)": PREDICTED_G})


@_themed
def regularisation(src: Sources, runs: pd.DataFrame) -> Figure:
    """C6: mean PoS under kl = ref, mirror, both (mean_std), measured vs predicted, per policy."""
    chosen = plain_runs(runs)
    chosen = chosen[(chosen["norm"] == "mean_std") & chosen["kl"].isin(KL_ORDER)]
    # One run per (policy, kl): the one with the smallest eps (mean_std_ref, not mean_std_ref_eps).
    chosen = chosen.sort_values("eps", na_position="first").drop_duplicates(["policy", "kl"])
    # A policy that ran only one kl target has nothing to compare: no panel.
    chosen = chosen[chosen.groupby("policy")["kl"].transform("nunique") > 1]
    if chosen.empty:
        return _message_figure("C6: regularisation target (mean_std)", f"{NO_DATA}: no policy ran two kl targets")
    pred = _train(load_predict(src, chosen))
    policies = _policies(chosen)
    colors = _palette(_ordered(chosen["kl"], KL_ORDER), "Set1")
    fig, axes = _grid(len(policies), panel=(3.8, 3.2), sharey=True)
    for ax, policy in zip(axes, policies):
        for kl, color in colors.items():
            sub = pred[(pred["policy"] == policy) & (pred["kl"] == kl)]
            if not sub.empty:
                _plot_trajectory(ax, sub, color)
        ax.set(ylabel="mean PoS", title=policy, ylim=(-0.02, 1.02))
        _iteration_axis(ax)
    return _finish(fig, {f"kl={k}": c for k, c in colors.items()}, STYLE_LEGEND)


GAP_STYLES = {"gap_trajectory": dict(linestyle="-", marker="o"), "gap_trajectory_G": dict(linestyle="--", marker="s")}
GAP_LEGEND = {"mean |pos - C3 trajectory|": GAP_STYLES["gap_trajectory"],
              "mean |pos - C3 trajectory, finite G|": GAP_STYLES["gap_trajectory_G"]}


def _gap_lines(ax, sweep: pd.DataFrame, colors: dict, xlabel: str) -> None:
    """E2: the two trajectory gaps against a numeric swept setting, one colour per policy (log2 x)."""
    for policy, sub in sweep.groupby("policy", sort=False):
        # A swept value equal to the base run's (the transformer's G16 at full scale) makes one point.
        means = sub.groupby(sub["value"].astype(float))[list(GAP_STYLES)].mean()
        for col, style in GAP_STYLES.items():
            if means[col].notna().any():
                ax.plot(means.index, means[col], color=colors[policy], **style)
    ax.set_xscale("log", base=2)
    ticks = sorted(set(sweep["value"].astype(float)))
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set(xlabel=xlabel, ylabel="gap (mean |difference|)", title=f"gap vs {xlabel}")
    ax.set_ylim(bottom=0)


def _setting_label(row) -> str:
    clip = "no clip" if pd.isna(row.clip_eps) else f"clip {row.clip_eps:g}"
    estimator = "full_vocab" if pd.isna(row.kl_estimator) else row.kl_estimator
    return f"KL {estimator}, {clip}"


def practice_gap_panels(numeric: dict[str, pd.DataFrame], categorical: pd.DataFrame) -> list[str]:
    """The panels of ``practice_gap``: each numeric sweep (group_size, inner_steps) that ran, then the
    estimator/clipping bars if either ran. A sweep the scale skipped gets no panel."""
    return [name for name, df in numeric.items() if not df.empty] + ([] if categorical.empty else ["categorical"])


@_themed
def practice_gap(src: Sources, runs: pd.DataFrame) -> Figure:
    """E2: how far practice sits from C3 against group size, inner steps, KL estimator and clipping."""
    practice = runs[runs["policy"].isin([p.name for p in registry.POLICY_TABLE
                                         if {"group_size", "inner_steps"} <= set(p.sweeps) and p.sampled])]
    numeric = {s: sweep_runs(practice, s) for s in ("group_size", "inner_steps")}
    categorical = pd.concat([sweep_runs(practice, s) for s in ("kl_estimator", "clip_eps")], ignore_index=True)
    panels = practice_gap_panels(numeric, categorical)
    if not panels:
        return _message_figure("E2: practice gap to C3",
                               f"{NO_DATA}: no group-size, inner-step, estimator or clip sweep")
    drawn = pd.concat([categorical, *numeric.values()])
    colors = _policy_palette(_policies(drawn))
    fig, axes = _grid(len(panels), panel=(4.0, 3.4))
    for ax, name in zip(axes, panels):
        if name in numeric:
            _gap_lines(ax, numeric[name], colors, name.replace("_", " "))
            continue
        bars = categorical.drop_duplicates(["policy", "run"]).assign(setting=lambda d: d.apply(_setting_label, axis=1))
        bars = bars.melt(id_vars=["policy", "setting"], value_vars=list(GAP_STYLES), var_name="gap",
                         value_name="gap_value").dropna(subset=["gap_value"])
        bars["series"] = bars["policy"] + ": " + bars["gap"]
        sns.barplot(data=bars, x="setting", y="gap_value", hue="series", ax=ax, palette="Paired")
        ax.set(xlabel="", ylabel="gap (mean |difference|)", title="gap vs KL estimator / clipping")
        ax.tick_params(axis="x", labelrotation=30)
        ax.legend(fontsize="x-small", title=None)
    return _finish(fig, colors, GAP_LEGEND)


@_themed
def heldout(src: Sources, runs: pd.DataFrame) -> Figure:
    """E3: mean PoS on train vs held-out questions per iteration, per plain run of the transformer family
    (the transformer, its control, trl: the registry says which policies have held-out questions)."""
    chosen = plain_runs(runs)
    chosen = chosen[chosen["policy"].map(lambda p: p in registry.POLICIES
                                         and registry.family_of(p) == "transformer").astype(bool)]
    pred = load_predict(src, chosen)
    with_heldout = set(map(tuple, pred.loc[pred["split"] == "heldout", ["policy", "run"]].to_numpy()))
    chosen = chosen[[key in with_heldout for key in zip(chosen["policy"], chosen["run"])]]
    if chosen.empty:
        return _message_figure("E3: transformer family, train vs held-out questions",
                               f"{NO_DATA}: no transformer held-out questions")
    colors = {"train": sns.color_palette("colorblind")[0], "heldout": sns.color_palette("colorblind")[3]}
    fig, axes = _grid(len(chosen), panel=(3.4, 3.0), sharey=True)
    for ax, row in zip(axes, chosen.itertuples(index=False)):
        for split, color in colors.items():
            sub = pred[(pred["policy"] == row.policy) & (pred["run"] == row.run) & (pred["split"] == split)]
            if not sub.empty:
                _plot_trajectory(ax, sub, color, predictions=False)
        gain = "" if pd.isna(row.heldout_gain) else f"\nheld-out gain {row.heldout_gain:+.3f}"
        ax.set(ylabel="mean PoS", title=f"{row.policy}/{row.run}{gain}", ylim=(-0.02, 1.02))
        _iteration_axis(ax)
    return _finish(fig, colors, {"measured (band: mean CI)": MEASURED})


RUNG_ORDER = ("R1", "R2", "R3", "R4", "R6", "R5")
TRANSFORMER_ORDER = ("transformer r1", "transformer r2", "transformer control", "transformer", "trl")  # its own chain


def _rung_sort_key(rung: str) -> tuple:
    """Chain order: R1, R2, R3 (its M points), R4 (largest m first), R6, R5, the loss choices, then the
    transformer control, the transformer and TRL."""
    base, _, value = rung.removeprefix("twin ").partition(" (")
    number = float(value.split("= ")[-1].rstrip(")")) if value else np.inf
    if base in RUNG_ORDER:
        position = RUNG_ORDER.index(base)
    elif base in TRANSFORMER_ORDER:
        position = len(RUNG_ORDER) + 1 + TRANSFORMER_ORDER.index(base)
    else:
        position = len(RUNG_ORDER)
    return (position, -number if base == "R4" else number, rung)


def _optional(path: Path | None, columns: list[str]) -> pd.DataFrame:
    """A table the rule may hand over (ladder.csv, attribution.csv); empty where it did not."""
    return read_csv(path, columns) if path is not None else pd.DataFrame(columns=columns)


@_themed
def gap_ladder(src: Sources, runs: pd.DataFrame) -> Figure:
    """E5: the gap to C3 rung by rung, per variant: mean over seeds with its 95% interval."""
    ladder = _optional(src.ladder, LADDER_COLUMNS)
    if ladder.empty:
        return _message_figure("E5: the gap ladder", f"{NO_DATA}: no E5 rung was run")
    ladder = ladder.merge(runs[["policy", "run", "variant"]], on=["policy", "run"], how="left")
    variants = list(dict.fromkeys(ladder["variant"]))
    sizes = ladder.groupby("variant").size()
    fig, axes = _packed([max(3.0, 0.36 * sizes[v] + 0.8) for v in variants], 3.8)
    colors = {"gap": sns.color_palette("colorblind")[0], "gap_G": sns.color_palette("colorblind")[1]}
    for ax, variant in zip(axes, variants):
        sub = ladder[ladder["variant"] == variant]
        # one block per question set (ladder.csv's questions), the table's first; a dotted line between blocks
        sets = list(dict.fromkeys(sorted(sub["questions"], key=lambda q: (q != "tabular", q))))
        sub = sub.iloc[sorted(range(len(sub)), key=lambda i: (sets.index(sub["questions"].iloc[i]),
                                                              _rung_sort_key(sub["rung"].iloc[i])))]
        x = np.arange(len(sub))
        for k, name in enumerate(sets):
            at = np.flatnonzero(sub["questions"].to_numpy() == name)
            if k:
                ax.axvline(at[0] - 0.5, color="0.5", lw=0.8, ls=":")
            ax.text(at.mean(), 1.0, f"{name} questions", transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize="x-small", color="0.3")
        for offset, (col, color) in zip((-0.2, 0.2), colors.items()):
            err = np.vstack([sub[col] - sub[f"{col}_lo"], sub[f"{col}_hi"] - sub[col]])
            ax.bar(x + offset, sub[col], width=0.4, color=color, yerr=err, capsize=2, error_kw={"lw": 0.8})
        ax.set_xticks(x, sub["rung"], rotation=60, ha="right", fontsize="x-small")
        ax.set_title(variant, pad=14)
        ax.set_ylabel("mean |p_n - prediction|" if ax.get_subplotspec().is_first_col() else "")
        ax.set_ylim(bottom=0)
    return _finish(fig, {"against C3": colors["gap"], "against C3 with finite G (E1)": colors["gap_G"]})


@_themed
def factorial(src: Sources, runs: pd.DataFrame) -> Figure:
    """E5 as a 2 x 2 x 2 factorial: per variant, each factor's part of R6's gap minus R1's in the chain
    ladder's order (R1 -> R2 -> R3 -> R6) beside its order-averaged (Shapley) part, 95% paired intervals."""
    table = _optional(src.attribution, ATTRIBUTION_COLUMNS)
    if table.empty:
        return _message_figure("E5 factorial", f"{NO_DATA}: no variant ran all eight cells")
    variants = list(dict.fromkeys(table["variant"]))
    fig, axes = _grid(len(variants), panel=(3.6, 3.2), sharey=True)
    colors = {"chain (R1 -> R2 -> R3 -> R6)": sns.color_palette("colorblind")[0],
              "Shapley (mean over the 3! orders)": sns.color_palette("colorblind")[2]}
    for ax, variant in zip(axes, variants):
        sub = table[(table["variant"] == variant) & (table["kind"] == "factor")]
        total = table[(table["variant"] == variant) & (table["kind"] == "total")].iloc[0]
        x = np.arange(len(sub))
        for offset, (col, color) in zip((-0.2, 0.2), zip(("chain", "shapley"), colors.values())):
            err = np.vstack([sub[col] - sub[f"{col}_lo"], sub[f"{col}_hi"] - sub[col]])
            ax.bar(x + offset, sub[col], width=0.4, color=color, yerr=err, capsize=2, error_kw={"lw": 0.8})
        ax.axhline(0.0, color="0.3", lw=0.8)
        ax.set_xticks(x, sub["factor"], fontsize="small")
        ax.set(title=f"{variant}\nR6 - R1 = {total['effect']:.3f}", ylabel="part of the gap to C3")
    return _finish(fig, colors)


# --------------------------------------------------------------------------- E6: the GRPO family's estimators
ANCHORS = {"ref": "p_ref", "mirror": "p_prev"}  # C3: logit p_n = logit(anchor) + S_G(p_{n-1}) / beta
OTHER = dict(color="0.6", lw=1, linestyle="-")  # grpo's curve behind another estimator's, to compare shapes


def estimator_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """E6: the estimator sweep's runs (``VARIANT-est<name>``) and, per policy, its base run (estimator grpo),
    with ``value`` the estimator's name; only kl=ref or kl=mirror runs, whose step C3 writes with S_G alone."""
    sweep = sweep_runs(runs, "estimator")
    sweep = sweep[sweep["kl"].isin(list(ANCHORS))]
    return sweep.assign(value=[run_estimator(row) for _, row in sweep.iterrows()])  # trl's base: TRL's default


def _estimators(sweep: pd.DataFrame) -> list[str]:
    return _ordered(sweep["value"], ESTIMATOR_NAMES)


def measured_weight_sum(pred: pd.DataFrame) -> pd.DataFrame:
    """Each measured step as S_G: beta (logit p_n - logit anchor) against p_{n-1}, per seed and question
    (anchor: p_ref under kl=ref, p_{n-1} under kl=mirror). Adds ``p_prev`` and ``s_measured``; n >= 1."""
    pred = pred.sort_values(["policy", "run", "seed", "question", "iteration"])
    pred = pred.assign(p_prev=pred.groupby(["policy", "run", "seed", "question"])["pos"].shift())
    anchor = np.where(pred["kl"] == "ref", pred["p_ref"], pred["p_prev"])
    pred = pred.assign(s_measured=pred["beta"] * (_logit(pred["pos"]) - _logit(anchor)))
    return pred[(pred["iteration"] >= 1) & pred["p_prev"].notna()]


def _s_g(curves: pd.DataFrame, row) -> np.ndarray:
    """The run's S_G on the curves' grid: step_gain_G is S_G / beta (predict.curves_frame)."""
    return curves["step_gain_G" if pd.notna(row.group_size) else "step_gain"].to_numpy() * row.beta


@_themed
def estimators_s_g(src: Sources, runs: pd.DataFrame) -> Figure:
    """E6: S_G(p) of each advantage estimator (its finite-G weight sum, predict's curves) with each measured
    step as S_G, beta (logit p_n - logit anchor), at its p_{n-1}: one panel per estimator."""
    sweep = estimator_runs(runs)
    if sweep.empty:
        return _message_figure("E6: S_G(p) per advantage estimator", f"{NO_DATA}: no estimator sweep")
    pred = measured_weight_sum(_train(load_predict(src, sweep)))
    names, colors = _estimators(sweep), _policy_palette(_policies(sweep))
    fig, axes = _grid(len(names), panel=(3.6, 3.0))
    for ax, name in zip(axes, names):
        top, bottom = [], []
        for row in sweep[sweep["value"] == name].itertuples(index=False):
            curves = load_curves(src, row)
            s_g, inner = _s_g(curves, row), curves["p"].between(0.05, 0.95).to_numpy()
            if name != "grpo":
                base = sweep[(sweep["policy"] == row.policy) & (sweep["value"] == "grpo")]
                for b in base.itertuples(index=False):
                    ax.plot(curves["p"], _s_g(load_curves(src, b), b), zorder=1, **OTHER)
            pts = _sample(pred[(pred["policy"] == row.policy) & (pred["run"] == row.run)])
            ax.scatter(pts["p_prev"], pts["s_measured"], color=colors[row.policy], s=8, alpha=0.4, lw=0,
                       rasterized=True, zorder=2)
            ax.plot(curves["p"], s_g, color=colors[row.policy], zorder=3, gid=f"S_G/{row.policy}/{name}",
                    **PREDICTED_G)
            top += [np.nanmax(s_g[inner]), np.nanpercentile(pts["s_measured"], 99) if len(pts) else 0.0]
            bottom += [np.nanpercentile(pts["s_measured"], 1) if len(pts) else 0.0]
        # the 1st to 99th percentile of the points and the curve on 0.05 <= p <= 0.95 (DAPO's S_G -> inf at the edges)
        ax.set(xlim=(0, 1), ylim=(min(0.0, 1.15 * np.nanmin(bottom)), 1.15 * np.nanmax(top)), xlabel="measured p_{n-1}",
               ylabel="S_G", title=name)
    return _finish(fig, colors, {"measured step: beta (logit p_n - logit anchor)": dict(linestyle="", marker="o"),
                                 "S_G of the run's estimator and G (E6)": PREDICTED_G, "grpo's S_G, to compare": OTHER})


@_themed
def estimators_limits(src: Sources, runs: pd.DataFrame) -> Figure:
    """E6: each estimator's predicted limit of C3_G from p_ref (its own S_G) with each question's measured
    PoS at the last iteration (mean over seeds): one panel per policy, a colour per estimator."""
    sweep = estimator_runs(runs)
    if sweep.empty:
        return _message_figure("E6: limit from p_ref per advantage estimator", f"{NO_DATA}: no estimator sweep")
    pred = _train(load_predict(src, sweep))
    final = pred[pred["iteration"] == pred.groupby(["policy", "run"])["iteration"].transform("max")]
    final = final.groupby(["policy", "run", "question"], as_index=False)[["p_ref", "pos"]].mean()
    policies = _policies(sweep)
    colors = _palette(_estimators(sweep))
    fig, axes = _grid(len(policies), panel=(4.2, 4.0))
    for ax, policy in zip(axes, policies):
        ax.plot([0, 1], [0, 1], color="0.5", lw=1)
        for row in sweep[sweep["policy"] == policy].itertuples(index=False):
            color, curves = colors[row.value], load_curves(src, row)
            limit = curves["limit_G" if pd.notna(row.group_size) else "limit"]
            ax.plot(curves["p"], limit, color=color, gid=f"limit_G/{policy}/{row.value}", **PREDICTED_G)
            pts = final[(final["policy"] == policy) & (final["run"] == row.run)]
            ax.scatter(pts["p_ref"], pts["pos"], color=color, s=14, alpha=0.8, edgecolor="white", lw=0.3)
        ax.set(xlim=(0, 1), ylim=(-0.02, 1.02), xlabel="p_ref", ylabel="limit (curve) / final PoS (points)",
               title=policy)
    return _finish(fig, colors, {"measured, last iteration (mean over seeds)": dict(linestyle="", marker="o"),
                                 "limit of C3_G from p_ref (E6)": PREDICTED_G,
                                 "p = p_ref (no amplification)": dict(linestyle="-", lw=1)})


FIGURES: dict[str, Callable[[Sources, pd.DataFrame], Figure]] = {
    "trajectories": trajectories,
    "per_question": per_question,
    "fixed_points": fixed_points,
    "normalisation": normalisation,
    "regularisation": regularisation,
    "practice_gap": practice_gap,
    "gap_ladder": gap_ladder,
    "factorial": factorial,
    "heldout": heldout,
    "estimators_s_g": estimators_s_g,
    "estimators_limits": estimators_limits,
}


def make_figure(name: str, src: Sources, out_png: str | Path) -> None:
    """Draw figure ``name`` from the handed-over files ``src``; write ``out_png`` atomically."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; known: {', '.join(FIGURES)}")
    runs = read_csv(src.runs, RUN_COLUMNS)
    with _theme():
        fig = FIGURES[name](src, runs)
        with atomic_path(out_png) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")


assert tuple(FIGURES) == registry.FIGURE_NAMES, "figures.FIGURES must follow registry.FIGURE_NAMES"
