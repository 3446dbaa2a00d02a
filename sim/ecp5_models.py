"""Simulation models of the ECP5 primitives the generator instantiates (``hdl.multiplier``).

Yosys ships MULT18X18D only as a black box, so the Verilog that an ECP5 build synthesizes could
not be simulated. This model covers what lenet-fpga uses and refuses the rest: the A, B and
output registers on CLK0 (each on or off), no pipeline register, no C input, signed or unsigned
operands. It is written from Lattice's ECP5 sysDSP usage guide and checks our side of the
contract (bit order, sign extension, two cycles of latency); it cannot check the silicon.
"""

from __future__ import annotations

BITS = 18


def mult18x18d_model() -> str:
    """The Verilog text of the model (module ``MULT18X18D``), to append to a design's source."""
    def bus(prefix: str, width: int) -> str:
        return ", ".join(f"{prefix}{i}" for i in reversed(range(width)))

    ports = ", ".join([bus("A", BITS), bus("B", BITS), bus("C", BITS), "SIGNEDA, SIGNEDB, SOURCEA, SOURCEB",
                       "CLK0, CE0, RST0", bus("P", 2 * BITS)])
    return f"""
module MULT18X18D({ports});
  parameter REG_INPUTA_CLK = "NONE";
  parameter REG_INPUTB_CLK = "NONE";
  parameter REG_INPUTC_CLK = "NONE";
  parameter REG_PIPELINE_CLK = "NONE";
  parameter REG_OUTPUT_CLK = "NONE";
  input {bus("A", BITS)};
  input {bus("B", BITS)};
  input {bus("C", BITS)};
  input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0;
  output {bus("P", 2 * BITS)};
  wire [{BITS - 1}:0] a = {{{bus("A", BITS)}}};
  wire [{BITS - 1}:0] b = {{{bus("B", BITS)}}};
  reg [{BITS - 1}:0] a_q, b_q;
  reg [{2 * BITS - 1}:0] p_q;
  wire [{BITS - 1}:0] a_in = REG_INPUTA_CLK == "NONE" ? a : a_q;
  wire [{BITS - 1}:0] b_in = REG_INPUTB_CLK == "NONE" ? b : b_q;
  wire [{2 * BITS - 1}:0] a_wide = {{{{{BITS}{{SIGNEDA & a_in[{BITS - 1}]}}}}, a_in}};
  wire [{2 * BITS - 1}:0] b_wide = {{{{{BITS}{{SIGNEDB & b_in[{BITS - 1}]}}}}, b_in}};
  wire [{2 * BITS - 1}:0] product = a_wide * b_wide;
  always @(posedge CLK0)
    if (RST0) begin
      a_q <= 0; b_q <= 0; p_q <= 0;
    end else if (CE0) begin
      a_q <= a; b_q <= b; p_q <= product;
    end
  assign {{{bus("P", 2 * BITS)}}} = REG_OUTPUT_CLK == "NONE" ? product : p_q;
  initial begin
    if (REG_PIPELINE_CLK != "NONE" || REG_INPUTC_CLK != "NONE")
      $fatal(1, "MULT18X18D model: pipeline and C registers are not modelled");
    if ((REG_INPUTA_CLK != "NONE" && REG_INPUTA_CLK != "CLK0") || (REG_INPUTB_CLK != "NONE" && REG_INPUTB_CLK != "CLK0")
        || (REG_OUTPUT_CLK != "NONE" && REG_OUTPUT_CLK != "CLK0"))
      $fatal(1, "MULT18X18D model: only CLK0 is modelled");
  end
endmodule
"""
