"""The outside check of the arithmetic (issue 26, part 5): hls4ml's bit-accurate C++ emulation,
with the ap_fixed types of ``scripts/hls4ml_check.py``, gives every golden logit on the MNIST test
set. The full runs are slow (each network's generated C++ takes 30 to 60 s to compile, then about
a minute for 10,000 images); the type mapping and the script's input errors are checked quickly.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from lenet_fpga.model import arith, weights

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "hls4ml_check.py"


@pytest.fixture(scope="module")
def hls4ml_check():
    spec = importlib.util.spec_from_file_location("hls4ml_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arithmetic", arith.ARITHMETICS, ids=lambda a: f"{a.rounding}-{a.overflow}")
def test_types_spell_out_the_contract(hls4ml_check, arithmetic):
    """Q2.6 is ap_fixed<8,2>; the requantizer is the cast to the result type with the contract's
    rounding and overflow; the accumulators are exactly as wide as the RTL's and never rounded."""
    ws = weights.load()
    formats = hls4ml_check.layer_formats(ws, arithmetic)
    modes = {"half-up": "AP_RND", "floor": "AP_TRN"}[arithmetic.rounding.value] + "," + \
        {"saturate": "AP_SAT", "wrap": "AP_WRAP"}[arithmetic.overflow.value]
    for layer in ws.network.layers:
        types = hls4ml_check.hls_types(formats[layer.name])
        n_terms = formats[layer.name].n_terms
        width = arith.signed_width(arith.accumulator_bound(n_terms))
        assert types["accum"] == f"ap_fixed<{width},{width - 2 * arith.FRAC_BITS}>"
        assert types["weight"] == types["bias"] == "ap_fixed<8,2>"
        if getattr(layer, "last", False):
            assert types["result"] == types["accum"]  # the logits are the raw accumulator
        else:
            assert types["result"] == f"ap_fixed<8,2,{modes}>"
            assert types["relu"] == types["pool"] == "ap_fixed<8,2>"
    assert hls4ml_check.ap_fixed(*hls4ml_check.PIXEL_FORMAT) == "ap_fixed<8,2,AP_RND,AP_SAT>"


def test_types_of_a_network_with_activation_formats(hls4ml_check):
    """The 4-bit network (UQ2.2, then UQ3.1 three times): each requantizer is the cast to the
    signed type one bit wider than the stored one, ReLU and pooling hold the stored unsigned
    4 bits, and each accumulator has 6 + the input's fraction bits."""
    ws = weights.load(weights.ASSETS / "lenet5_act4.npz")
    formats = hls4ml_check.layer_formats(ws, ws.arithmetic)
    types = {name: hls4ml_check.hls_types(fmt) for name, fmt in formats.items()}
    assert types["conv1"]["result"] == "ap_fixed<5,3,AP_RND,AP_SAT>" and types["conv1"]["relu"] == "ap_ufixed<4,2>"
    assert types["conv2"]["result"] == "ap_fixed<5,4,AP_RND,AP_SAT>" and types["conv2"]["pool"] == "ap_ufixed<4,3>"
    fracs = {name: int(t["accum"].split(",")[0].split("<")[1]) - int(t["accum"].split(",")[1].rstrip(">"))
             for name, t in types.items()}
    assert fracs == {"conv1": 12, "conv2": 8, "fc1": 7, "fc2": 7, "fc3": 7}


@pytest.mark.parametrize("argv", [["--weights", "no-such.npz"], ["--arithmetic", "half-up"], ["--n", "0"],
                                  ["--data", "/nonexistent-mnist"]])
def test_bad_input_exits_2(hls4ml_check, argv, capsys):
    assert hls4ml_check.main(argv) == 2
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("name", ["lenet5_saturate", "lenet5_lowbit", "lenet5_pow2", "lenet5_wrap", "lenet5_act4"])
def test_hls4ml_gives_every_golden_logit(hls4ml_check, name, mnist_test, tmp_path):
    """The default network, two with restricted weight codes (ternary and 3-bit; powers of two)
    the one trained for wrap-around and the 4-bit-activation network (UQ2.2, UQ3.1 x3), each in
    its own arithmetic, on all 10,000 test images."""
    pytest.importorskip("hls4ml", reason="hls4ml is not installed (pip install -e '.[hls4ml]')")
    path = Path(str(weights.ASSETS)) / f"{name}.npz"
    ws = weights.load(path)
    images = mnist_test.fitted(ws.network).images
    row = hls4ml_check.check(path, ws, ws.arithmetic, images, tmp_path / "hls", log=lambda text: None)
    assert (row.images, row.compared) == (10_000, 10_000 * ws.network.classes)
    assert row.mismatches == 0
    assert row.overflows > 0  # the requantizer's out-of-range case was met (and agreed)
