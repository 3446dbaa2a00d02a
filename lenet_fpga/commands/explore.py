"""``lenet-fpga explore``: sweep a grid of designs through the flow's stages on Dask workers."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from ..hdl.designs import DEFAULT_DESIGN, DEFAULT_PRESET, DESIGNS
from . import options

NAME = "explore"
HELP = "sweep a grid of designs through golden accuracy, RTL and place and route on Dask workers"
DESCRIPTION = """\
Sweep a grid of points through the flow's stages, on the cores of this machine (a Dask
LocalCluster) or on the workers of a Dask cluster (--scheduler). Each finished point is a
line of the results file; a rerun skips the points it has. Needs the explore extra.

The grid is the product of the axes given (comma lists; --filters, --lanes and
--soft-multipliers may be repeated, each value one step of its axis), or a --grid file:
  lenet-fpga explore --preset baseline,fast --lanes 20 --lanes 10,5,2 --stages golden,rtl
  lenet-fpga explore --stages rtl,pnr --seed 1,2,3 --time-limit 30
  lenet-fpga explore --grid sweep.toml --scheduler tcp://HOST:8786
A grid file (TOML or JSON) has the fields weights, designs (tables of preset, filters,
lanes, soft_multipliers, name), devices, clocks_mhz, seeds, stages, rtl_images,
simulator, time_limit_minutes."""


def add_arguments(parser) -> None:
    o = options
    parser.add_argument("--grid", metavar="FILE", default=None,
                        help="the grid as a .toml or .json file (instead of the grid options below)")
    parser.add_argument("--weights", type=o.name_list, default=None, metavar="FILE.npz[,FILE.npz...]",
                        help="weight files (with their .json manifests); 'shipped' is the shipped LeNet-5 (default)")
    parser.add_argument("--design", choices=list(DESIGNS), default=None,
                        help=f"the generator of every point: {', '.join(DESIGNS)} (default {DEFAULT_DESIGN}; a "
                             f"grid file may mix them)")
    parser.add_argument("--preset", type=o.name_list, default=None, metavar="NAME[,NAME...]",
                        help="generator presets, each resolved against the weights' network (default baseline)")
    parser.add_argument("--filters", type=o.positive_int_list, action="append", default=None, metavar="N[,N...]",
                        help="a value of the filters axis (as for verilog --filters); repeat for more")
    parser.add_argument("--lanes", type=o.positive_int_list, action="append", default=None, metavar="N[,N...]",
                        help="a value of the lanes axis (as for verilog --lanes); repeat for more")
    parser.add_argument("--soft-multipliers", type=o.name_list, action="append", default=None,
                        metavar="LAYER[,LAYER...]",
                        help="a value of the soft-multiplier axis ('none' for none); repeat for more")
    parser.add_argument("--device", type=o.name_list, default=None, metavar="PART[,PART...]",
                        help="ECP5 parts for place and route: LFE5U-12F, -25F, -45F, -85F (default LFE5U-85F)")
    parser.add_argument("--clock-mhz", type=o.positive_float_list, default=None, metavar="MHZ[,MHZ...]",
                        help="clocks place and route aims for, and at which images/s is given without it "
                             "(default 100)")
    parser.add_argument("--seed", type=o.nonnegative_int_list, default=None, metavar="N[,N...]",
                        help="nextpnr placement seeds (default 1)")
    parser.add_argument("--stages", type=o.name_list, default=None, metavar="STAGE[,STAGE...]",
                        help="golden (accuracy on the MNIST test set), rtl (stream --rtl-images through the RTL: "
                             "interval, latency, bit-exact), pnr (out-of-context synthesis and place and route: "
                             "resources, Fmax); default golden,rtl")
    parser.add_argument("--rtl-images", type=o.positive_int, default=None,
                        help="images the rtl stage streams (default 8)")
    o.simulator_option(parser, default=None)
    o.time_limit_option(parser, "time_limit_minutes",
                        "a point's rtl and pnr stages together stop after this long, their processes killed, "
                        "and the point is recorded as failed (default: no limit)")
    o.data_option(parser)
    parser.add_argument("--results", metavar="FILE.jsonl", default=None,
                        help="results file, one JSON line per point (default build/explore/results.jsonl)")
    parser.add_argument("--plots", metavar="DIR", default=None,
                        help="draw the Pareto fronts into this folder, as NAME-pareto.png for the results file "
                             "NAME.jsonl (default: beside the results file)")
    parser.add_argument("--retry-failed", action="store_true", help="rerun the points the results file has as failed")
    o.jobs_option(parser, None, "worker processes of the local cluster (default: one per core)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:8786", default=None,
                        help="run on the workers of this Dask scheduler instead of a local cluster")
    parser.add_argument("--scratch", metavar="DIR", default=None,
                        help="where workers build (a folder per point; default: each worker's Dask local directory)")
    parser.add_argument("--keep-builds", action="store_true", help="keep each point's build folder")
    parser.add_argument("--build-dir", metavar="DIR", default=None,
                        help="the local cluster's simulator builds, shared by its workers and kept for the next "
                             "sweep (default: $LENET_FPGA_BUILD, else build/sim); a --scheduler's workers use "
                             "their own $LENET_FPGA_BUILD, else their scratch")
    o.json_option(parser, "print the summary and every record as one JSON object")


def plot_path(args, results_path: Path) -> Path:
    """``--plots DIR``: DIR/NAME-pareto.png; a value ending in .png (the option's old meaning)
    names the picture itself."""
    name = results_path.stem + "-pareto.png"
    if not args.plots:
        return results_path.with_name(name)
    if args.plots.endswith(".png"):
        return Path(args.plots)
    return Path(args.plots) / name


def _number(value, spec=",.0f"):
    return "-" if value is None else format(value, spec)


def format_table(records: list[dict]) -> str:
    from ..explore import pareto
    from ..explore.sweep import short_name

    lines = [f"{'key':<10}{'weights':<24}{'design':<28}{'status':<8}{'accuracy':>9}{'mults':>6}{'interval':>9}"
             f"{'latency':>8}{'Fmax':>7}{'LUT':>8}{'DSP':>5}{'images/s':>10}{'seconds':>9}"]
    starred = False
    for r in records:
        m = pareto.metrics(r)
        at_clock = "images_per_second" not in m and "images_per_second_at_clock" in m
        images_per_second = _number(m.get("images_per_second", m.get("images_per_second_at_clock"))) + \
            ("*" if at_clock else " ")
        starred = starred or at_clock
        accuracy = "-" if "accuracy" not in m else f"{m['accuracy']:.2%}"
        lines.append(f"{r['key'][:8]:<10}{Path(r['point']['weights']).name[:23]:<24}{short_name(r)[:27]:<28}"
                     f"{r['status']:<8}{accuracy:>9}{_number(m.get('multipliers')):>6}"
                     f"{_number(m.get('interval_cycles')):>9}{_number(m.get('latency_cycles')):>8}"
                     f"{_number(m.get('fmax_mhz'), '.1f'):>7}{_number(m.get('luts')):>8}{_number(m.get('dsp')):>5}"
                     f"{images_per_second:>11}{_number(r.get('task_seconds'), '.0f'):>8}")
    if starred:
        lines.append("images/s: Fmax / interval; * at the point's clock / interval (no Fmax)")
    return "\n".join(lines)


def format_failures(records: list[dict]) -> str:
    from ..explore.sweep import short_name

    lines = []
    for r in records:
        if r["status"] == "done":
            continue
        lines.append(f"{r['key'][:8]} {short_name(r)}: {r.get('error', 'failed')}")
        for stage in r.get("stages", {}).values():
            for log, tail in stage.get("log", {}).items():
                lines.append(f"    {log}: " + " | ".join(tail[-3:]))
    return "\n".join(lines)


def format_timing(t: dict) -> str:
    return (f"{t['points']} points in {t['wall_seconds']:.1f} s on {t['workers']} worker(s); stage functions "
            f"{t['stage_function_seconds']:.1f} s in all"
            + (f", failed or stopped stages {t['failed_stage_seconds']:.1f} s" if t["failed_stage_seconds"] else "")
            + f". Engine time per point (the workers' time not in a "
            f"stage function, idle workers included): {t['engine_overhead_per_point']:.2f} s, of which stage "
            f"process start-up and hand-over {t['stage_process_overhead_per_point']:.2f} s and the rest of the "
            f"task {t['task_overhead_per_point']:.2f} s")


def run(args) -> int:
    from ..explore import cluster, pareto
    from ..explore.results import ResultsFile
    from ..explore.sweep import DEFAULT_RESULTS, Sweep, run as run_sweep, short_name, timing
    from ..model.atomic import check_output
    from ..model.errors import InputError
    from ..sim import runner

    if args.scheduler:
        cluster.check_address(args.scheduler)
    grid = grid_of(args)
    results = ResultsFile(check_output(args.results or DEFAULT_RESULTS, "--results"))
    picture = check_output(plot_path(args, results.path), "--plots")
    if args.jobs is not None and args.scheduler:
        raise InputError("--jobs sizes the local cluster; with --scheduler the cluster has its own workers")
    existing = results.read()  # a results file that cannot be read is said before any work
    sweep = Sweep(grid, args.data, check_tools=not args.scheduler)
    before_done = [k for k in sweep.points if existing.get(k, {}).get("status") == "done"]
    before_failed = [k for k in sweep.points if k in existing and k not in before_done]
    to_run = [k for k in sweep.points if k not in existing or (args.retry_failed and k in before_failed)]
    if args.retry_failed:
        results.drop(before_failed)
    say = (lambda *_: None) if args.json else print
    say(f"{sweep.grid_points} grid points, {len(sweep.points)} distinct; in {results.path}: {len(before_done)} "
        f"done, {len(before_failed)} failed{' (rerun now)' if args.retry_failed and before_failed else ''}; "
        f"{len(to_run)} to run")
    if results.damaged:
        say(f"({results.damaged} damaged line(s) in {results.path} skipped)")
    run_info = None
    # One machine: the workers share the client's simulator builds (a design is built once, and
    # again by no later sweep); other machines' workers keep theirs.
    sim_cache = None if args.scheduler else str(runner.check_build_root(args.build_dir))
    if to_run:
        with cluster.open_client(args.scheduler, args.jobs) as client:
            run_info = run_sweep(sweep, to_run, results, client, args.scratch, args.keep_builds, quiet=args.json,
                                 sim_cache=sim_cache)
    records_by_key = results.read()
    records = [records_by_key[k] for k in sweep.points if k in records_by_key]
    found = pareto.fronts(records)
    several_weights = len({r["point"]["weights"] for r in records}) > 1
    summary = {"results": str(results.path), "points": len(sweep.points), "done": sum(r["status"] == "done" for r in records),
               "failed": sum(r["status"] != "done" for r in records)}
    if run_info is not None:
        summary["timing"] = timing([records_by_key[k] for k in to_run if k in records_by_key], run_info)
    if found:
        from ..explore.plots import fronts_figure

        names = {r["key"]: short_name(r, several_weights) for r in records}
        summary["plot"] = str(fronts_figure(found, names, picture,
                                            f"{len(records)} points, {summary['done']} done ({results.path.name})"))
    summary["fronts"] = {entry["front"].title: [entry["points"][i][2] for i in entry["on_front"]] for entry in found}
    if args.json:
        print(json.dumps({"summary": summary, "records": records}))
    else:
        print(format_table(records))
        failures = format_failures(records)
        if failures:
            print("failed:\n" + failures)
        for title, on in summary["fronts"].items():
            print(f"Pareto front, {title}: " + ", ".join(short_name(records_by_key[k], several_weights) for k in on))
        if "timing" in summary:
            print(format_timing(summary["timing"]))
        print(f"results: {results.path}" + (f"; plot: {summary['plot']}" if "plot" in summary else ""))
    return 0 if summary["done"] == len(sweep.points) else 1


# ---- the grid from the command line: each option an axis ----

def grid_from_args(args):
    """The grid the command line gives: each option an axis (absent: its default)."""
    from ..explore.grid import Design, Grid

    presets = args.preset or (DEFAULT_PRESET,)
    design = args.design or DEFAULT_DESIGN  # argparse checked it against the registry
    points = tuple(Design(p, f, l, s, design=design) for p, f, l, s in itertools.product(
        presets, args.filters or [None], args.lanes or [None], args.soft_multipliers or [None]))
    fields = {"designs": points}
    for option, axis in (("weights", "weights"), ("device", "devices"), ("clock_mhz", "clocks_mhz"),
                         ("seed", "seeds"), ("stages", "stages")):
        value = getattr(args, option, None)
        if value is not None:
            fields[axis] = tuple(value)
    for option in ("rtl_images", "simulator", "time_limit_minutes"):
        if getattr(args, option, None) is not None:
            fields[option] = getattr(args, option)
    return Grid(**fields)


GRID_OPTIONS = ("weights", "design", "preset", "filters", "lanes", "soft_multipliers", "device", "clock_mhz", "seed",
                "stages", "rtl_images", "simulator", "time_limit_minutes")


def grid_of(args):
    """``--grid FILE``, or the grid options; not both."""
    from ..explore.grid import read_grid_file
    from ..model.errors import InputError

    if getattr(args, "grid", None):
        given = [f"--{o.replace('_', '-')}" for o in GRID_OPTIONS if getattr(args, o, None) is not None]
        if given:
            raise InputError(f"--grid gives the whole grid; {', '.join(given)} cannot be added to it "
                             f"(put {'it' if len(given) == 1 else 'them'} in the file)")
        return read_grid_file(args.grid)
    return grid_from_args(args)
