"""The ``grpo-amp`` command line.

    grpo-amp predict --p-ref 0.2 --beta 1 --iters 10          # C3 trajectory, C4 fixed points, limit
    grpo-amp predict --p-ref 0.02 --beta 0.5 --kl both --beta-prev 5 --json
    grpo-amp predict --p-ref 0.2 --beta 1 --group-size 8 --std sample   # E1: finite group
    grpo-amp bench theory --repeat 5
    grpo-amp bench trl --repeat 20 --threads 2                 # ours vs TRL's GRPOTrainer (bench extra)
    grpo-amp bench scaling --repeat 3 --threads 1              # how its cost grows; exponents; what fits in 24 GB
    grpo-amp check-published results/smoke results/published/<machine>/smoke   # exit 1 if any differs
    grpo-amp publish results/smoke results/published/<machine>/smoke --command "snakemake ..."
    grpo-amp ui-url --scale smoke                              # the MLflow UI's runs view of a scale
    grpo-amp archive grpo-amp-published.tar.gz                 # results/published/ + SHA256SUMS, reproducible

Values the theory rejects (beta <= 0, p outside [0, 1], unknown kl/norm, group size < 2) end in one
line ``grpo-amp: error: ...`` on stderr and exit status 1; malformed command lines (a missing option,
``--beta abc``) get argparse's usage message and exit status 2.

A new subcommand is a ``_add_<name>(subparsers)`` function that registers its options and sets
``func`` (called with the parsed namespace), plus one line in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from grpo_amp import __version__
from grpo_amp.io import exit_on_user_error


# --------------------------------------------------------------------------- predict
def _add_predict(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="closed-form PoS trajectory, fixed points and limit for one question",
        description="C3 trajectory from p_ref, C4 fixed points with their stability, and the limit "
                    "reached from p_ref (docs/theory.md, C3 and C4).")
    parser.add_argument("--p-ref", type=float, required=True, help="PoS of the reference policy, in [0, 1]")
    parser.add_argument("--beta", type=float, required=True, help="KL strength (> 0)")
    # kl/norm/std are checked by the theory, not by argparse choices, so every bad value gets
    # the same one-line error and exit status.
    parser.add_argument("--kl", default="ref", help="ref | mirror | both (default: ref)")
    parser.add_argument("--norm", default="mean_std", help="mean_std | mean_only (default: mean_std)")
    parser.add_argument("--iters", type=int, default=10, help="iterations of the trajectory (default: 10)")
    parser.add_argument("--beta-prev", type=float, default=0.0, help="KL strength to pi_{n-1} for kl=both (> 0)")
    parser.add_argument("--eps", type=float, default=0.0, help="eps in sqrt(p(1-p) + eps) (default: 0)")
    # float, not int: "--group-size 1.5" should get the theory's message, not argparse's.
    parser.add_argument("--group-size", type=float, default=None,
                        help="finite group size G >= 2 (E1); default: the population limit")
    parser.add_argument("--std", default="population",
                        help="population | sample std within a finite group (default: population)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.set_defaults(func=_run_predict)


def _prediction_args(args) -> dict:
    return dict(p_ref=args.p_ref, beta=args.beta, n_iters=args.iters, kl=args.kl, beta_prev=args.beta_prev,
                norm=args.norm, eps=args.eps, group_size=args.group_size, std=args.std)


def _finite_or_none(value: float) -> float | None:
    # JSON has no NaN: a limit that does not exist (2-cycle) is null.
    return None if math.isnan(value) else value


def prediction_to_json(pred) -> dict:
    return {
        "trajectory": [float(p) for p in pred.trajectory],
        "fixed_points": [{"p": fp.p, "slope": fp.slope, "attracting": fp.attracting} for fp in pred.fixed_points],
        "limit": _finite_or_none(pred.limit),
    }


def _setting_line(args) -> str:
    group = "population limit" if args.group_size is None else f"G={args.group_size:g}, {args.std} std"
    prev = f", beta_prev={args.beta_prev:g}" if args.kl == "both" else ""
    return (f"p_ref={args.p_ref:g}, kl={args.kl}, beta={args.beta:g}{prev}, norm={args.norm}, "
            f"eps={args.eps:g}, {group}")


def _logit(p: float) -> float:
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p) - math.log1p(-p)


def _trajectory_table(trajectory) -> list[str]:
    lines = [f"{'n':>4}  {'p_n':>10}  {'logit p_n':>10}"]
    for n, p in enumerate(trajectory):
        lines.append(f"{n:>4}  {p:>10.6f}  {_logit(float(p)):>+10.4f}")
    return lines


HPRIME = "h'(p*)"


def _fixed_point_table(pred, kl: str) -> list[str]:
    if kl == "mirror":
        return ["fixed points (C4): none below 1 (mirror: logit p_n grows by S(p_{n-1})/beta > 0 every step)"]
    if not pred.fixed_points:
        return ["fixed points (C4): none found"]
    lines = [f"fixed points (C4; h'(p*) = slope of the kl={kl} step at p*, attracting iff |h'(p*)| < 1):",
             f"{'p*':>10}  {HPRIME:>9}  stability"]
    for fp in pred.fixed_points:
        lines.append(f"{fp.p:>10.6f}  {fp.slope:>+9.4f}  {'attracting' if fp.attracting else 'repelling'}")
    return lines


def _limit_line(limit: float) -> str:
    if math.isnan(limit):
        return "predicted limit from p_ref: none (the iteration does not settle: a 2-cycle, |h'(p*)| > 1)"
    return f"predicted limit from p_ref: {limit:.6f}"


def format_prediction(pred, args) -> str:
    lines = [f"C3 trajectory: {_setting_line(args)}", *_trajectory_table(pred.trajectory), "",
             *_fixed_point_table(pred, args.kl), "", _limit_line(pred.limit)]
    return "\n".join(lines)


def _run_predict(args) -> int:
    from grpo_amp import theory  # scipy import only when a subcommand needs it

    pred = theory.predict(**_prediction_args(args))
    if args.json:
        print(json.dumps(prediction_to_json(pred)))
    else:
        print(format_prediction(pred, args))
    return 0


# --------------------------------------------------------------------------- bench
def _add_bench(subparsers) -> None:
    from grpo_amp.bench import BENCHMARKS

    names = list(BENCHMARKS)
    parser = subparsers.add_parser(
        "bench", help="time a part of the project against its goals",
        description=f"Benchmarks: {', '.join(names)}. trl times one GRPO iteration of ours against TRL's "
                    "GRPOTrainer at equal work; scaling times it as questions, G, completion length and width "
                    "grow, fits exponents, and extrapolates what fits in 24 GB.")
    parser.add_argument("name", help=f"which benchmark ({' | '.join(names)})")
    parser.add_argument("--repeat", type=int, default=5, help="runs per task; the median is reported (default: 5)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for trl and scaling (default: torch's current setting)")
    parser.set_defaults(func=_run_bench)


def _run_bench(args) -> int:
    from grpo_amp.bench import run_benchmark

    print(run_benchmark(args.name, args.repeat, args.threads))
    return 0


# --------------------------------------------------------------------------- published runs
def _add_check_published(subparsers) -> None:
    parser = subparsers.add_parser(
        "check-published", help="compare a fresh run's claims.csv and runs.csv with a published run",
        description="Prints per claim and policy (claims.csv) and per policy and run (runs.csv): "
                    "reproduced, moved, text changed, verdict changed, setting changed, missing or extra, "
                    "and the check each line's numbers used: the published seed interval (practice), "
                    "round-off 1e-9 (the exact control), or 0.02 or 10% where a file has no interval; "
                    "exit status 1 if any line is not reproduced (grpo_amp.release.published).")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a fresh run's results/<scale>/")
    parser.add_argument("published_dir", metavar="PUBLISHED_DIR", help="results/published/<machine>/<scale>/")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.set_defaults(func=_run_check_published)


def _run_check_published(args) -> int:
    from grpo_amp.release.published import check_published

    ok, report = check_published(args.run_dir, args.published_dir, as_json=args.json)
    print(report)
    return 0 if ok else 1


def _add_publish(subparsers) -> None:
    parser = subparsers.add_parser(
        "publish", help="copy a run's summary files (claims, runs, figures, benchmarks) for committing",
        description="Copies claims.csv, claims.md, runs.csv and figures/*.png from RUN_DIR, every job's "
                    "benchmark TSV as one benchmarks.csv, and writes COMMAND.txt (grpo_amp.release.publish).")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run's results/<scale>/")
    parser.add_argument("published_dir", metavar="PUBLISHED_DIR", help="results/published/<machine>/<scale>/")
    # dest: "command" is already the subcommand's name in the namespace
    parser.add_argument("--command", dest="run_command", metavar="COMMAND", required=True,
                        help="the command line that made the run (for COMMAND.txt)")
    parser.set_defaults(func=_run_publish)


def _run_publish(args) -> int:
    from grpo_amp.release.publish import publish

    written = publish(args.run_dir, args.published_dir, args.run_command)
    print(f"published {len(written)} files to {args.published_dir}")
    return 0


def _add_archive(subparsers) -> None:
    parser = subparsers.add_parser(
        "archive", help="write a reproducible tarball of the published summaries with SHA256SUMS inside",
        description="Every file under PUBLISHED (default results/published) at PREFIX/<path>, plus "
                    "PREFIX/SHA256SUMS; sorted members, fixed mtimes (SOURCE_DATE_EPOCH or 0): the same "
                    "files give the same bytes (grpo_amp.release.archive).")
    parser.add_argument("out", metavar="OUT.tar.gz", help="the tarball to write")
    parser.add_argument("--published", default="results/published", help="the directory to archive")
    parser.add_argument("--prefix", default=None, help="top directory inside (default: grpo-amp-VERSION-published)")
    parser.set_defaults(func=_run_archive)


def _run_archive(args) -> int:
    from grpo_amp.release.archive import write_archive

    names = write_archive(args.out, args.published, args.prefix)
    print(f"wrote {args.out}: {len(names)} members under {names[0]}/")
    return 0


# --------------------------------------------------------------------------- MLflow UI
def _add_ui_url(subparsers) -> None:
    parser = subparsers.add_parser(
        "ui-url", help="print the MLflow UI's URL of a scale's training runs",
        description="MLflow 3.17's UI opens on the GenAI overview ('No data'); this URL opens the runs "
                    "table of the scale's experiment in 'Model training' mode. Start the UI with "
                    "`mlflow ui --backend-store-uri URI` first (grpo_amp.tracking.mlflow_store.runs_view_url).")
    parser.add_argument("--scale", default="default", help="the scale whose experiment to open (default: default)")
    parser.add_argument("--uri", default="sqlite:///results/mlflow.db",
                        help="the tracking URI (default: sqlite:///results/mlflow.db)")
    parser.add_argument("--host", default="127.0.0.1", help="where `mlflow ui` listens (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="its port (default: 5000)")
    parser.set_defaults(func=_run_ui_url)


def _run_ui_url(args) -> int:
    from grpo_amp.tracking import mlflow_store as tracking

    print(tracking.runs_view_url(tracking.find_experiment_id(args.uri, args.scale), args.host, args.port))
    return 0


# --------------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grpo-amp", description="Does GRPO amplify the probability of success as the theory says?")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_predict(subparsers)
    _add_bench(subparsers)
    _add_check_published(subparsers)
    _add_publish(subparsers)
    _add_archive(subparsers)
    _add_ui_url(subparsers)
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
