"""The option vocabulary every command shares: argparse types, and the options several commands
take, each spelt and explained once.

Importing this module must stay cheap (``lenet-fpga --help`` imports it): no torch, no amaranth.
"""

from __future__ import annotations

import argparse
import math

from ..boards.platforms import BOARDS
from ..hdl.designs import COMPACT_WEIGHTS, DEFAULT_DESIGN, DEFAULT_PRESET, DESIGNS, GeneratorOptions
from ..model.arith import Arithmetic, Overflow, Rounding


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else f"{text[:20]!r}... ({len(text)} characters)"


def _number(parse, check, words: str):
    """An argparse type: ``parse`` the text, then require ``check(value)`` ("must be ``words``").
    A float must be finite (not inf or nan) unless ``check`` is given one and accepts it."""
    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:  # also an integer beyond Python's 4300-digit limit
            raise argparse.ArgumentTypeError(
                f"{_shown(text)} is not a {'whole number' if parse is int else 'number'}") from None
        if parse is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if not check(value):
            raise argparse.ArgumentTypeError(f"must be {words}, got {_shown(text)}")
        return value
    return convert


positive_int = _number(int, lambda v: v >= 1, "at least 1")
nonnegative_int = _number(int, lambda v: v >= 0, "0 or more")
positive_float = _number(float, lambda v: v > 0, "above 0")
nonnegative_float = _number(float, lambda v: v >= 0, "0 or more")
fraction = _number(float, lambda v: 0 <= v <= 1, "a fraction from 0 to 1")
bench_runs = _number(int, lambda v: 1 <= v <= 0xFFFF, "1 to 65535 (BENCH's runs are a u16)")


def positive_int_list(text: str) -> tuple[int, ...]:
    """``20`` or ``43,14,2``: one value for every layer, or one per layer."""
    return tuple(positive_int(part) for part in text.split(","))


def positive_float_list(text: str) -> tuple[float, ...]:
    return tuple(positive_float(part) for part in text.split(","))


def nonnegative_int_list(text: str) -> tuple[int, ...]:
    return tuple(nonnegative_int(part) for part in text.split(","))


def name_list(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    return () if names in ((), ("none",)) else names


def hidden_alias(parser: argparse.ArgumentParser, *old: str, dest: str, **kwargs) -> None:
    """An old spelling whose meaning differs from the new option's: its own ``dest``, not shown
    in --help."""
    parser.add_argument(*old, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def hide(action: argparse.Action, *old: str) -> argparse.Action:
    """Old spellings of an option, given to ``add_argument`` after its new one: they parse as
    the same option (required, default and all), and ``HelpFormatter`` leaves them out."""
    action.hidden_option_strings = frozenset(old)
    return action


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; an option's old spellings (``hide``) not shown."""

    def _format_action_invocation(self, action):
        hidden = getattr(action, "hidden_option_strings", ())
        if not hidden:
            return super()._format_action_invocation(action)
        shown = argparse.Action(option_strings=[o for o in action.option_strings if o not in hidden],
                                dest=action.dest, nargs=action.nargs, metavar=action.metavar)
        return super()._format_action_invocation(shown)


def arithmetic_options(parser: argparse.ArgumentParser) -> None:
    """--overflow and --rounding over the weights' own arithmetic."""
    parser.add_argument(
        "--overflow", choices=[o.value for o in Overflow], default=None,
        help="requantizer overflow: clip (saturate) or keep the low 8 bits (wrap); default: the weights' own",
    )
    parser.add_argument(
        "--rounding", choices=[r.value for r in Rounding], default=None,
        help="requantizer rounding: (acc+32)>>6 (half-up) or acc>>6 (floor); default: the weights' own",
    )


def requantizer_options(parser: argparse.ArgumentParser) -> None:
    """The arithmetic a new network is trained for (``arithmetic_options`` overrides a file's)."""
    parser.add_argument("--overflow", choices=[o.value for o in Overflow], default=None,
                        help="requantizer overflow to train for: clip to -128..127 (saturate, default) or keep "
                             "the low 8 bits (wrap)")
    parser.add_argument("--rounding", choices=[r.value for r in Rounding], default=None,
                        help="requantizer rounding to train for: (acc+32)>>6 (half-up, default) or acc>>6 (floor)")


def activations_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--activations", metavar="F[,F...]", default=None,
                        help="the hidden layers' activation formats, one for all or one per layer: a format "
                             "(Q2.6, UQ2.2: integer.fraction bits, U unsigned) or a width in bits (4: unsigned, "
                             "its range chosen per layer on the float network), or auto[:FLOOR] (each "
                             "layer's width chosen against the generated design's memory bits, keeping the "
                             "accuracy of the quantized network at FLOOR percent, default 0.5 points below 8 bits "
                             "on the calibration images); default Q2.6 (docs/arithmetic.md)")


def data_option(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument(
        "--data", metavar="DIR", default=None,
        help=help or "folder with the four MNIST .gz files (default: $LENET_FPGA_DATA, else "
                     "~/.local/share/lenet-fpga/mnist, which `lenet-fpga download` fills)",
    )


def dataset_options(parser: argparse.ArgumentParser) -> None:
    """``--dataset PATH``: a data set of the user's own instead of MNIST (``model.datasets``),
    with ``--grey`` and ``--test-fraction``."""
    parser.add_argument("--dataset", metavar="PATH", default=None,
                        help="a data set of your own instead of MNIST: an .npz (train_images, train_labels, "
                             "test_images, test_labels; or images, labels) or a folder of PNGs (train/<class>/*.png "
                             "and test/<class>/*.png; or <class>/*.png); grey or colour images, uint8, square")
    parser.add_argument("--grey", action="store_true",
                        help="with --dataset: convert colour images to grey, for a grey network (without --grey "
                             "they keep their channels, which the network's input must have: 32x3/... for RGB)")
    parser.add_argument("--test-fraction", type=_number(float, lambda v: 0 < v < 1, "between 0 and 1"),
                        default=None, metavar="F",
                        help="with --dataset: the share of a data set without a test part of its own that is set "
                             "aside (by a fixed permutation) as the test set (default 1/6)")


def dataset_of(args: argparse.Namespace):
    """The data set ``--dataset`` names (a ``model.datasets.Dataset``), or None for MNIST."""
    from ..model.datasets import load_dataset
    from ..model.errors import InputError

    path = getattr(args, "dataset", None)
    if path is None:
        if getattr(args, "grey", False) or getattr(args, "test_fraction", None) is not None:
            raise InputError("--grey and --test-fraction are for --dataset: give it as well")
        return None
    if getattr(args, "data", None) is not None:
        raise InputError("--data names the MNIST folder, --dataset a data set of your own: give one")
    return load_dataset(path, grey=args.grey, test_fraction=getattr(args, "test_fraction", None))


def torch_options(parser: argparse.ArgumentParser, seed_help: str = "random seed (default 1)") -> None:
    """The options of every command that trains with PyTorch."""
    parser.add_argument("--seed", type=nonnegative_int, default=1, help=seed_help)
    parser.add_argument("--threads", type=positive_int, default=2, help="CPU threads for PyTorch (default 2)")


WEIGHTS_HELP = ("integer weights with their .json manifest beside them; 'shipped' (the default) is the shipped "
                "LeNet-5")


def weights_option(parser: argparse.ArgumentParser, help: str = WEIGHTS_HELP) -> None:
    parser.add_argument("--weights", metavar="FILE.npz", default=None, help=help)


def out_weights_option(parser: argparse.ArgumentParser, help: str = "where to write the weights (+ .json manifest "
                                                                    "and -float.npz checkpoint)") -> None:
    parser.add_argument("--out", required=True, metavar="FILE.npz", help=help)


def json_option(parser: argparse.ArgumentParser, help: str = "print one JSON object instead of the text") -> None:
    parser.add_argument("--json", action="store_true", help=help)


def plots_option(parser: argparse.ArgumentParser, default: str | None = None, what: str = "PNG plots") -> None:
    """``--plots DIR``: the folder a command draws its pictures into, each under a fixed name."""
    parser.add_argument("--plots", metavar="DIR", default=default,
                        help=f"draw {what} into this folder" + (f" (default {default}; '' for none)" if default
                                                               else ""))


def build_dir_option(parser: argparse.ArgumentParser) -> None:
    """``--build-dir DIR``: where a simulating command builds (and caches) its simulator models."""
    parser.add_argument("--build-dir", metavar="DIR", default=None,
                        help="where simulator builds are made and cached (default: $LENET_FPGA_BUILD, else "
                             "build/sim)")


def board_option(parser: argparse.ArgumentParser, **kwargs) -> None:
    kwargs.setdefault("help", "target board")
    parser.add_argument("--board", choices=BOARDS, **kwargs)


def lanes_option(parser: argparse.ArgumentParser, design: bool = False) -> None:
    """The generator's size: a preset rule resolved against the network, and overrides; with
    ``design``, also which generator (``--design``, the names of ``hdl.designs.DESIGNS``)."""
    if design:
        parser.add_argument("--design", choices=list(DESIGNS), default=DEFAULT_DESIGN,
                            help="; ".join(f"{name}: {entry.summary}" for name, entry in DESIGNS.items()))
    parser.add_argument("--preset", default=DEFAULT_PRESET, metavar="NAME",
                        help="generator sizing rule, resolved against the weights' network: baseline (one "
                             "filter per conv engine, 20 lanes per linear engine) or fast (every stage sized "
                             f"to the pixel input's pace); default {DEFAULT_PRESET}")
    parser.add_argument("--filters", type=positive_int_list, default=None, metavar="N[,N...]",
                        help="filters computed at once by each conv engine (one value, or one per conv layer; "
                             "each a divisor of its layer's filters); default: the preset's")
    parser.add_argument("--lanes", type=positive_int_list, default=None, metavar="N[,N...]",
                        help="multipliers of each linear engine (one value, or one per linear layer, each at most its "
                             "layer's inputs); default: the preset's. The compact design: its one array's multipliers (default 8)")
    parser.add_argument("--compact-weights", choices=list(COMPACT_WEIGHTS), default="auto",
                        help="the compact design's weight memory: bitstream (block RAM with initial values, each "
                             "layer at its code width: a board classifies right after configuration, and its "
                             "weights cannot be replaced), spram (loaded over the link after configuration, any "
                             "network) or auto (bitstream when it fits the iCE40 UP5K's block RAM beside the "
                             "link; default)")
    parser.add_argument("--soft-multipliers", type=name_list, default=None, metavar="LAYER[,LAYER...]",
                        help="layers whose multipliers are built from logic instead of DSP blocks "
                             "('none' for none); default: the preset's")


# The parsed options that are generator options (GeneratorOptions' fields), by their dest.
GENERATOR_OPTIONS = ("design", "preset", "filters", "lanes", "soft_multipliers", "compact_weights", "rounding",
                     "overflow")


def generator_options(args: argparse.Namespace) -> GeneratorOptions:
    """The typed generator options of a parsed command line; an option the command does not
    have keeps ``GeneratorOptions``' default. The one place a namespace becomes options."""
    return GeneratorOptions(**{name: getattr(args, name) for name in GENERATOR_OPTIONS
                               if getattr(args, name, None) is not None})


def arithmetic_of(args: argparse.Namespace, default: Arithmetic) -> Arithmetic:
    """--rounding/--overflow where given, else ``default`` (what the weights were trained for)."""
    return generator_options(args).arithmetic(default)


def simulator_option(parser: argparse.ArgumentParser, default: str | None = "verilator") -> None:
    parser.add_argument("--simulator", choices=["icarus", "verilator"], default=default,
                        help="HDL simulator (default verilator: about 100x faster than icarus on this design)")


def time_limit_option(parser: argparse.ArgumentParser, dest: str, help: str, old: tuple[str, ...] = ()) -> None:
    hide(parser.add_argument("--time-limit", *old, dest=dest, type=positive_float, default=None, metavar="MINUTES",
                             help=help), *old)


def jobs_option(parser: argparse.ArgumentParser, default: int | None, help: str) -> None:
    """``--jobs N``: processes to spread the work across (``--workers`` is its old spelling)."""
    hide(parser.add_argument("--jobs", "--workers", type=positive_int, default=default, metavar="N", help=help),
         "--workers")
