"""The fully connected engine: one LeNet-5 linear layer, ``lanes`` multiply-accumulates per cycle.

An image's input vector arrives on ``i`` one code per transfer and is written into an input
buffer whose words hold ``lanes`` codes. Once the vector is complete the engine computes the
outputs one after the other: each cycle it reads one input word and the matching word of the
output's weight row, multiplies the ``lanes`` pairs, sums them in an adder tree and accumulates.
Output ``j`` takes ``ceil(in_features / lanes)`` cycles and output ``j + 1`` follows without a
bubble, so the image costs about ``out_features * ceil(in_features / lanes)`` cycles after its last
input, plus the pipeline depth.

The weight rows are stored back to back, a row padded to whole words with zero weights, so the
weight address is a plain counter and the unused lanes of an input word never matter. The
pipeline is

    issue (addresses) -> read (memory data) -> the MAC pipeline (``hdl/mac.py``: operands,
    products, two-stage adder tree, accumulate, requantize) -> output queue

with every arrow a register, so that a multiplier or a few adders is the longest path. The
pipeline never stalls: an output reserves its place in the output queue when its first word
issues (``result_queue``), and words issue only while there is a place, so back-pressure on ``o``
holds the sequencer and nothing else.

The input buffer has two banks (ping-pong): the next image's inputs load into one while the
sequencer computes from the other, so in a stream of images the engine costs
``max(in_features, out_features * words_per_row)`` cycles each, not the sum.
"""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model import arith
from . import datapath, params
from .mac import DEPTH as MAC_DEPTH
from .mac import MacPipeline
from .products import WeightForm
from .result_queue import ResultQueue

# Cycles from the last weight word's issue to its output transfer: the memories' read, the MAC
# pipeline, the output queue's input register (the queue's output is the transfer itself).
PIPELINE_DEPTH = 1 + MAC_DEPTH + 1


class LinearEngine(wiring.Component):
    """One fully connected layer: ``o[j] = f(sum_i x[i] * w[j, i] + (b[j] << 6))``.

    ``f`` is ``relu(requantize(.))`` for a hidden layer (``o`` carries Q2.6 codes) and the identity
    for the last layer (``o`` carries the raw accumulators, the logits).

    Parameters
    ----------
    weight : numpy.ndarray
        int8 weight codes, shape ``[out_features, in_features]``.
    bias : numpy.ndarray
        int8 bias codes, shape ``[out_features]``.
    arithmetic : model.arith.LayerArithmetic
        The input format (its bias shift), output format, rounding and overflow (an
        ``arith.Arithmetic``: Q2.6; the output is unused by the last layer).
    lanes : int
        Multipliers, and codes per input/weight memory word.
    last : bool
        The last layer: output the accumulator instead of a requantized code.
    name : str
        Prefix of the memories' names in the generated Verilog.
    soft_multipliers : bool
        Build the multipliers from logic instead of DSP blocks (``datapath.product_parts``).
    nonnegative_inputs : bool
        Every input code is >= 0 (ReLU outputs): the multipliers drop the sign bit. A negative
        input then gives wrong sums; leave it False for arbitrary codes.
    form : products.WeightForm
        The weights' restricted codes: the weight memory holds their stored indices, ``bits``
        each, and the multipliers are as narrow as they are (``hdl/products.py``).

    Attributes
    ----------
    i : In(stream.Signature(signed(8)))
        ``in_features`` codes per image, in index order.
    o : Out(stream.Signature(signed(8) or accumulator shape))
        ``out_features`` results per image, in index order.
    weight_memory, bias_memory, input_memory : Memory
        The weight rows (``lanes`` codes a word, row ``j`` at words ``j*words_per_row ...``),
        the biases and the input buffer (two banks of ``words_per_row`` words).
    memory_bits : int
        Bits of all three memories.
    cycles_per_image : int
        Cycles from an image's first input transfer to its last output transfer, without stalls.
    cycles_between_images : int
        Cycles from one image's first input transfer to the next image's, in a long stream of
        images back to back.
    """

    def __init__(self, weight, bias, arithmetic: arith.Arithmetic, lanes: int = 20, last: bool = False,
                 name: str = "fc", soft_multipliers: bool = False, nonnegative_inputs: bool = False,
                 form: WeightForm = WeightForm()):
        weight, bias = params.codes("weight", weight, 2), params.codes("bias", bias, 1)
        if bias.shape != weight.shape[:1]:
            raise ValueError(f"bias must have shape [{weight.shape[0]}] to match the weight, got "
                             f"{list(bias.shape)}")
        self._arithmetic = params.arithmetic(arithmetic)
        self._lanes = params.positive("lanes", lanes)
        self._last = params.flag("last", last)
        self._name = params.name(name)
        self._soft = params.flag("soft_multipliers", soft_multipliers)
        self._nonnegative = params.flag("nonnegative_inputs", nonnegative_inputs)
        self._weight, self._bias = weight, bias
        self._out_features, self._in_features = weight.shape
        self._words_per_row = math.ceil(self._in_features / lanes)
        self.form = form
        self.mac = MacPipeline(1, lanes, self._in_features, self._arithmetic, raw=last,
                               soft_multipliers=soft_multipliers, nonnegative_inputs=nonnegative_inputs, name=name,
                               form=form)
        out_shape = self.mac.acc_shape if last else datapath.CODE

        weight_words = [w for row in self._weight for w in datapath.pack_words(form.stored(row), lanes, form.bits)]
        self.weight_memory = Memory(shape=unsigned(lanes * form.bits), depth=len(weight_words), init=weight_words)
        # The inputs at their stored width (8 bits for Q2.6; fewer for a narrow format's ReLU outputs).
        self._input_bits = self._arithmetic.input.stored_bits
        word = unsigned(lanes * self._input_bits)
        self.bias_memory = Memory(shape=unsigned(arith.WIDTH), depth=self._out_features,
                                  init=datapath.pack_words(self._bias, 1))
        self.input_memory = Memory(shape=word, depth=2 * self._words_per_row, init=[])

        super().__init__({
            "i": In(stream.Signature(datapath.CODE)),
            "o": Out(stream.Signature(out_shape)),
        })

    @property
    def in_features(self) -> int:
        return self._in_features

    @property
    def out_features(self) -> int:
        return self._out_features

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def multipliers(self) -> int:
        return self.mac.multipliers

    @property
    def dsp_blocks(self) -> int:
        return self.mac.dsp_blocks

    @property
    def soft_multipliers(self) -> bool:
        return self._soft

    @property
    def last(self) -> bool:
        return self._last

    @property
    def arithmetic(self) -> arith.LayerArithmetic:
        return self._arithmetic

    @property
    def name(self) -> str:
        return self._name

    @property
    def words_per_row(self) -> int:
        return self._words_per_row

    @property
    def memory_bits(self) -> int:
        return sum(mem.depth * mem.shape.width
                   for mem in (self.weight_memory, self.bias_memory, self.input_memory))

    @property
    def compute_cycles(self) -> int:
        """Cycles of weight words per image: one word a cycle."""
        return self._out_features * self._words_per_row

    @property
    def cycles_between_images(self) -> int:
        # Loading (one code a cycle) overlaps computing the previous image from the other bank.
        return max(self._in_features, self.compute_cycles)

    @property
    def cycles_per_image(self) -> int:
        return self._in_features + self.compute_cycles + PIPELINE_DEPTH

    def elaborate(self, platform):
        m = Module()
        lanes, words = self._lanes, self._words_per_row
        m.submodules[f"{self._name}_weights"] = self.weight_memory
        m.submodules[f"{self._name}_biases"] = self.bias_memory
        m.submodules[f"{self._name}_inputs"] = self.input_memory

        # Between loader and sequencer: bank b holds a complete input vector.
        full = Signal(2)
        load_bank, read_bank = Signal(), Signal()

        # Loader: code n goes to word n // lanes, lane n % lanes (a one-hot byte enable).
        bits = self._input_bits
        write = self.input_memory.write_port(granularity=bits)
        load_word = Signal(range(words))
        load_lane = Signal(lanes, init=1)
        last_lane = 1 << ((self._in_features - 1) % lanes)
        loaded = Signal()  # the vector's last code is being written
        m.d.comb += [
            self.i.ready.eq(~full.bit_select(load_bank, 1)),
            write.addr.eq(Mux(load_bank, words + load_word, load_word)),
            write.data.eq(Cat(*[self.i.payload[:bits]] * lanes)),
            write.en.eq(Mux(self.i.valid & self.i.ready, load_lane, 0)),
            loaded.eq(self.i.valid & self.i.ready & (load_word == words - 1) & (load_lane == last_lane)),
        ]
        with m.If(self.i.valid & self.i.ready):
            with m.If(loaded):
                m.d.sync += [load_word.eq(0), load_lane.eq(1), load_bank.eq(~load_bank)]
            with m.Elif(load_lane[-1]):
                m.d.sync += [load_word.eq(load_word + 1), load_lane.eq(1)]
            with m.Else():
                m.d.sync += load_lane.eq(load_lane << 1)

        m.submodules.results = results = ResultQueue(self.o.payload.shape())
        wiring.connect(m, results.o, wiring.flipped(self.o))

        # Issue: addresses of word k of output j; the weight rows are consecutive words.
        input_read = self.input_memory.read_port()
        weight_read = self.weight_memory.read_port()
        bias_read = self.bias_memory.read_port()
        k = Signal(range(words))
        j = Signal(range(self._out_features))
        weight_addr = Signal(range(self.weight_memory.depth))
        # A row's first word reserves the output's place in the queue.
        issue = Signal()  # a weight word goes into the pipeline this cycle (named for waveforms)
        m.d.comb += issue.eq(full.bit_select(read_bank, 1) & (results.room | (k != 0)))
        computed = Signal()  # the image's last weight word is being issued
        m.d.comb += [
            input_read.addr.eq(Mux(read_bank, words + k, k)), weight_read.addr.eq(weight_addr), bias_read.addr.eq(j),
            results.reserve.eq(issue & (k == 0)),
            computed.eq(issue & (k == words - 1) & (j == self._out_features - 1)),
        ]
        with m.If(issue):
            m.d.sync += weight_addr.eq(weight_addr + 1)
            with m.If(k == words - 1):
                m.d.sync += k.eq(0)
                with m.If(j == self._out_features - 1):
                    m.d.sync += [j.eq(0), weight_addr.eq(0), read_bank.eq(~read_bank)]
                with m.Else():
                    m.d.sync += j.eq(j + 1)
            with m.Else():
                m.d.sync += k.eq(k + 1)
        for bank in range(2):
            with m.If(loaded & (load_bank == bank)):
                m.d.sync += full[bank].eq(1)
            with m.If(computed & (read_bank == bank)):
                m.d.sync += full[bank].eq(0)

        # The memories answer the cycle after issue; from there the MAC pipeline (``mac``) takes
        # over: accumulate the row's words on top of the bias, requantize for a hidden layer.
        flags1 = Signal(3)  # valid, first word of a row, last word of a row
        m.d.sync += flags1.eq(Cat(issue, k == 0, k == words - 1))
        m.submodules.mac = mac = self.mac
        inputs = datapath.pack_codes(datapath.unpack_codes(input_read.data, lanes, bits))
        m.d.comb += [mac.x.eq(inputs), mac.w.eq(weight_read.data), mac.bias.eq(bias_read.data),
                     mac.valid.eq(flags1[0]), mac.first.eq(flags1[1]), mac.last.eq(flags1[2]),
                     results.i.valid.eq(mac.o_valid), results.i.payload.eq(mac.o)]
        return m

