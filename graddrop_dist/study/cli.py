"""graddrop-sweep RECIPE|SWEEP.yaml: run a grid of methods x drop rates x seeds, then report.

    graddrop-sweep study/offline-topics-sweep              # run, then report
    graddrop-sweep study/offline-topics-sweep --dry-run    # list the runs
    graddrop-sweep study/cldr-emoji-sweep --report-only --report-dir docs/study

Run it again after an interruption: finished runs are kept, cut runs resume from their
checkpoint. The report (summary.md, summary.json, plots/*.png) goes to
<output_dir>/report and to --report-dir. A bad sweep file is one line on stderr and exit
status 2 before any run starts; exit status 1 when a run failed (its log is named).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from graddrop_dist.cli_errors import OneLineParser


def parse_args(argv):
    parser = OneLineParser(prog="graddrop-sweep", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", help="a shipped sweep by name (study/cldr-emoji-sweep; "
                                      "graddrop-train --list-recipes lists them) or a YAML")
    parser.add_argument("--dry-run", action="store_true",
                        help="print every run's command and state; start nothing")
    parser.add_argument("--report-only", action="store_true",
                        help="start no run; report on the runs that finished")
    parser.add_argument("--report-dir", help="also write the report here (e.g. docs/study)")
    parser.add_argument("--rerun-changed", action="store_true",
                        help="run again, from scratch, the runs whose config changed since "
                             "they ran (otherwise such stale runs stop the sweep)")
    return parser.parse_args(argv)


def report(sweep, directories: list[Path]) -> dict:
    from graddrop_dist.study.analysis import markdown, summarize, write_report
    from graddrop_dist.study.plots import plot_languages

    summary = summarize(sweep)
    for directory in directories:
        write_report(summary, directory)
        plot_languages(summary, directory / "plots")
    print(markdown(summary))
    print("report in " + ", ".join(str(d) for d in directories))
    return summary


def run_sweep(sweep, tuning, args, echo) -> tuple[list, list]:
    """Tuning runs, the choice, the study runs (none with --report-only): (runs, failed).
    Raises StaleRuns when a run's config changed since it ran, unless --rerun-changed."""
    from graddrop_dist.study.runner import execute, plan_runs, refuse_stale
    from graddrop_dist.study.tuning import choose, write_choice

    again = args.rerun_changed
    if not again:
        refuse_stale(tuning)
    failed = [] if args.report_only or not tuning else \
        execute(sweep, tuning, echo=echo, rerun_changed=again)
    chosen = choose(sweep) if sweep.tune else {}
    if sweep.tune and chosen is not None:
        echo(f"tuning: each cell's choice in {write_choice(sweep, chosen)}")
    runs = plan_runs(sweep, chosen) if chosen is not None else []
    if not again:
        refuse_stale(runs)
    if not args.report_only and runs:
        failed += execute(sweep, runs, echo=echo, rerun_changed=again)
    return runs, failed


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from graddrop_dist.study.sweep_config import SweepError, load_sweep
    from graddrop_dist.study.runner import StaleRuns, plan_runs, plan_tuning_runs, run_command

    try:
        sweep = load_sweep(args.sweep)
    except SweepError as error:
        print(f"graddrop-sweep: error: {error}", file=sys.stderr)
        return 2
    tuning = plan_tuning_runs(sweep)
    if args.dry_run:
        runs = plan_runs(sweep)
        for run in [*tuning, *runs]:
            state = "stale" if run.stale else "done" if run.done else \
                "resume" if run.resumable else "new"
            print(f"{state:6s} {run.label}: {shlex.join(run_command(sweep, run))}")
        if sweep.tune and not runs:
            print(f"then {len(sweep.cells) * len(sweep.settings.seeds)} runs (cells x seeds), "
                  "each cell with the values its tuning chose")
        return 0

    def echo(text: str) -> None:
        print(text, flush=True)

    try:
        runs, failed = run_sweep(sweep, tuning, args, echo)
    except StaleRuns as error:
        print(f"graddrop-sweep: error: {error}", file=sys.stderr)
        return 2
    directories = [Path(sweep.settings.output_dir) / "report"]
    if args.report_dir:
        directories.append(Path(args.report_dir))
    if any(run.done for run in runs):
        report(sweep, directories)
    if failed:
        print(f"graddrop-sweep: {len(failed)} run(s) failed: "
              + ", ".join(f"{run.label} ({run.directory}/run.log)" for run in failed),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
