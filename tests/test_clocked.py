"""The clock made inside the simulation (sim/clocked.py): the wrapper keeps every port but the
clock, and a design runs cycle for cycle as it does under cocotb's clock."""

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from lenet_fpga.api import design_config
from lenet_fpga.model import arith, golden
from lenet_fpga.model.network import Network
from lenet_fpga.model.weights import WeightSet, make_manifest
from lenet_fpga.sim import clocked, network, runner


class Registered(wiring.Component):
    a: In(signed(8))
    c: In(1)
    b: Out(signed(12))

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.b.eq(self.a + self.c)
        return m


class Combinational(wiring.Component):
    a: In(unsigned(4))
    b: Out(unsigned(4))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.b.eq(~self.a)
        return m


def test_the_wrapper_has_every_port_but_the_clock():
    text = verilog.convert(Registered(), name="top")
    assert sorted(d.split()[-1] for _, d in clocked.ports(text, "top")) == ["a", "b", "c", "clk", "rst"]
    assert ("input", "[7:0] a") in clocked.ports(text, "top") and ("output", "[11:0] b") in clocked.ports(text, "top")
    wrapped, top = clocked.wrap(text, "top")
    assert top == "top_clocked" and wrapped.startswith(text.rstrip("\n"))
    assert sorted(d.split()[-1] for _, d in clocked.ports(wrapped, top)) == ["a", "b", "c", "rst"]
    assert f"always #{clocked.HALF_PERIOD_NS} clk = ~clk;" in wrapped
    assert "top clocked_design(.clk(clk), " in wrapped


def test_what_is_not_wrapped():
    comb = verilog.convert(Combinational(), name="top")
    assert not clocked.has_clock(comb, "top")
    assert runner.with_clock(comb, "top", waves=False) == (comb, "top")  # nothing to clock
    registered = verilog.convert(Registered(), name="top")
    assert runner.with_clock(registered, "top", waves=True) == (registered, "top")  # a waveform starts at the design
    assert runner.with_clock(registered, "top", waves=False, clock_inside=False) == (registered, "top")
    with pytest.raises(ValueError, match="no module other"):
        clocked.wrap(registered, "other")


def test_a_port_it_cannot_read_is_an_error_not_an_open_wire():
    text = verilog.convert(Registered(), name="top").replace("  input [7:0] a;", "  input [7:0] \\a$x ;")
    with pytest.raises(ValueError, match="port\\(s\\) a"):
        clocked.wrap(text, "top")


@pytest.mark.parametrize("back_to_back", [False, True])
def test_the_clock_inside_gives_the_same_cycles(simulator, sim_build, back_to_back):
    """A small network in the simulation harness, once clocked by cocotb and once by its wrapper:
    the same logits, the same cycle counts and (back to back) the same cycle each image was
    taken and done."""
    net = Network.parse("2k5p4:4")
    rng = np.random.default_rng(3)
    params = {name: rng.integers(-60, 61, size=shape).astype(np.int8) for name, shape in net.parameter_shapes.items()}
    ws = WeightSet(params=params, manifest=make_manifest(arith.Arithmetic(), net), path=None)
    design = network.harness_design(ws, design_config(ws))
    images = rng.integers(0, 256, size=(3, 28, 28)).astype(np.uint8)
    testbench = "lenet_fpga.sim.tb_stream" if back_to_back else "lenet_fpga.sim.tb_lenet"
    outputs = []
    for inside in (False, True):
        result = runner.run(design.verilog, network.TOPLEVEL, testbench, {"images": images, "classes": net.classes},
                            simulator=simulator, build_root=sim_build, clock_inside=inside)
        outputs.append(result.outputs)
    cocotb_clock, inside_clock = outputs
    assert cocotb_clock.keys() == inside_clock.keys()
    for key in cocotb_clock:
        assert np.array_equal(cocotb_clock[key], inside_clock[key]), key
    expected = golden.forward(images, params, ws.arithmetic, net)
    assert np.array_equal(inside_clock["logits"], expected)
