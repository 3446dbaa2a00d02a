"""What ``sim``, ``demo`` and ``classify`` share: the simulation with a progress bar, the images
the options name, and the summary of a run."""

from __future__ import annotations

from pathlib import Path


def run_simulation(ws, image_set, config, simulator, waves=False, quiet=False, jobs=1, back_to_back=False,
                   scheduler=None, build_root=None):
    """The simulation with a progress bar: the simulator's build (minutes for Verilator, cached
    after), then the images, so the bar's rate is the images' own; or the shards on Dask workers."""
    from ..model.progress import progress

    from ..sim.network import simulate

    with progress(total=len(image_set), desc=f"building the {simulator} model", unit="image", disable=quiet) as bar:
        def stage(name):
            if name == "build":
                bar.set_description(f"building the {simulator} model")
            elif name == "cluster":
                bar.set_description("starting the Dask cluster" if scheduler == "local" else "reaching the Dask cluster")
            elif name == "simulate":
                bar.set_description(f"simulating ({simulator}{', Dask' if scheduler else ''})")
                bar.reset(total=len(image_set))  # the rate counts from here

        if scheduler:  # shards on Dask workers (explore/shards.py), the same shards as --jobs
            from ..explore.shards import simulate_on_cluster

            return simulate_on_cluster(ws, image_set.images, config, simulator, back_to_back, scheduler,
                                       workers=jobs if scheduler == "local" else None, progress=bar.update,
                                       build_root=build_root, stage=stage)
        return simulate(ws, image_set.images, config, simulator=simulator, waves=waves, jobs=jobs,
                        back_to_back=back_to_back, progress=bar.update, stage=stage, build_root=build_root)


def image_set_of(args, network):
    """``--images FILE``, ``--mnist`` (the MNIST test set), ``--dataset PATH`` (its test images)
    or the shipped digits; ``--n`` first; at the network's input size."""
    from ..model import images as image_sets
    from ..model.errors import InputError

    from . import options

    named = [option for option, given in (("--images", args.images is not None), ("--mnist", getattr(args, "mnist", False)),
                                          ("--dataset", getattr(args, "dataset", None) is not None)) if given]
    if len(named) > 1:
        raise InputError(f"{', '.join(named[:-1])} and {named[-1]} {'both' if len(named) == 2 else 'all'} name the "
                         f"images; give one")
    dataset = options.dataset_of(args)
    if dataset is not None:  # its test images
        test = dataset.fitted(network)
        image_set = image_sets.ImageSet(test.images, test.labels, Path(dataset.source))
    elif getattr(args, "mnist", False):
        from ..model import mnist

        data = getattr(args, "data", None)
        split = mnist.load("test", data)
        image_set = image_sets.ImageSet(split.images, split.labels, Path(data or mnist.default_data_dir()))
    else:
        image_set = image_sets.load_image_set(args.images)
    return image_set.head(args.n).fitted(network).checked_labels(network)


def summary(run, image_set, config, simulator) -> dict:
    """A run's figures, as ``sim --json`` prints them under ``total``."""
    from ..hdl.designs import describe

    cycles = run.cycles.astype("int64")
    total = {
        "images": int(len(cycles)),
        "mismatches": run.mismatches,
        "cycles_per_image": float(cycles.mean()),
        "cycles_min": int(cycles.min()),
        "cycles_max": int(cycles.max()),
        "simulator": simulator,
        "sim_seconds": round(run.sim_seconds, 2),
        "startup_seconds": round(run.startup_seconds, 2),
        "build_seconds": round(run.build_seconds, 2),
        # Every clock cycle the simulators ran (reset and weight loads included), per image: the
        # latency one image at a time, about the interval back to back.
        "simulated_cycles_per_image": round(run.simulated_cycles / max(len(cycles), 1), 1),
        # The testbench's own time only: the build and the simulator's start-up are reported apart.
        "simulated_cycles_per_second": round(run.simulated_cycles / max(run.sim_seconds, 1e-9)),
        "arithmetic": config.arithmetic.describe(),
        "design": describe(config),
    }
    if run.cluster_seconds or run.overhead_seconds:  # on Dask workers
        total["cluster_seconds"] = round(run.cluster_seconds, 2)
        total["overhead_seconds"] = round(run.overhead_seconds, 2)
    if image_set.labels is not None:
        total["rtl_accuracy"] = float((run.rtl_class == image_set.labels).mean())
    return total


def format_summary(s: dict) -> str:
    lines = [
        f"{s['images']} images on {s['simulator']} ({s['design']}), {s['arithmetic']}: "
        f"{s['mismatches']} mismatches against the golden model",
        (f"cycles per image {s['cycles_per_image']:.0f} (min {s['cycles_min']}, max {s['cycles_max']})"
         if not s.get("back_to_back") else
         f"cycles from start to done with the images back to back {s['cycles_per_image']:.0f} "
         f"(min {s['cycles_min']}, max {s['cycles_max']}), {s['simulated_cycles_per_image']:,.0f} simulated per image"),
        f"{s['simulated_cycles_per_second']:,} simulated cycles/s per simulator; build {s['build_seconds']:.1f} s"
        + (f", cluster {s['cluster_seconds']:.1f} s" if "cluster_seconds" in s else "")
        + f", simulator start-ups {s['startup_seconds']:.1f} s, simulation {s['sim_seconds']:.1f} s"
        + (f", shard processes {s['overhead_seconds']:.1f} s" if "overhead_seconds" in s else "")
        + " (summed over the simulators)",
    ]
    if "wall_seconds" in s:
        lines.append(f"wall time {s['wall_seconds']:.1f} s with " + (
            f"{s['jobs']} simulator job(s)" if "scheduler" not in s else f"the Dask workers of {s['scheduler']}"))
    if "rtl_accuracy" in s:
        lines.append(f"RTL accuracy on these images {s['rtl_accuracy']:.1%}")
    return "\n".join(lines)


def per_image(run, image_set) -> list[dict]:
    """Each image's logits, classes and cycles, RTL against the golden model."""
    rows = []
    for k in range(len(image_set)):
        entry = {
            "index": k,
            "rtl_logits": run.rtl_logits[k].tolist(),
            "rtl_class": int(run.rtl_class[k]),
            "golden_logits": run.golden_logits[k].tolist(),
            "golden_class": int(run.golden_class[k]),
            "match": bool(run.matches[k]),
            "cycles": int(run.cycles[k]),
        }
        if image_set.labels is not None:
            entry["label"] = int(image_set.labels[k])
        rows.append(entry)
    return rows
