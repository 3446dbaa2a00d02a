"""An AXI4-Stream face for any accelerator: pixels in, results out, weights in, as three streams
with the AXI names (``docs/interface.md``, "AXI4-Stream wrapper", has the ports and the timing).

An AXI user has no ``start`` pulse and no ``done`` to catch: a frame of pixels (``tlast`` on its
last) is an image, and its answer comes back as a frame of result words that waits until the
sink takes it. The wrapper around the accelerator (either design: it uses only the
``AcceleratorSignature`` ports) does four things:

* **Start.** When the first pixel of a frame is offered it raises ``start`` (while the pixel
  input is held), and passes the frame's pixels through once the accelerator has taken it.
* **Room first.** ``done`` is a one-cycle pulse that cannot wait, so an image is started only
  when its answer has a place: a ``ResultQueue`` (``hdl/result_queue.py``) of ``depth`` results
  is reserved at the start and freed when the answer's last word leaves. While every place is
  reserved (images in flight plus answers not yet taken), ``s_axis_tready`` stays low: the pixel
  input stalls, it never drops a pixel or an answer.
* **Frames checked.** An image is exactly ``network.pixels`` pixels. A ``tlast`` before the last
  pixel ends the frame early: the wrapper gives the accelerator zero pixels for the rest (with
  ``s_axis_tready`` low) and the next pixel starts a new image. A last pixel without ``tlast``:
  the pixels that follow are taken and dropped up to and including the next ``tlast``, and the
  pixel after it starts a new image. Either way that image's answer still comes out, in order,
  with its error bit set, and ``tlast_error`` pulses (``tlast_errors`` counts them): one answer
  per input frame, so a sink can always pair them.
* **Weights.** A frame on ``s_axis_weights`` is a weight image (``Accelerator.weight_image``):
  the wrapper pulses ``weights_restart`` before its first byte and passes the bytes through up
  to ``tlast``. A weight frame waits until no image is in flight, and no image starts while one
  is offered or open. The length is not checked (as on the native port).

The result frame (``m_axis``, 32-bit words, ``1 + classes`` beats, ``tlast`` on the last)::

    beat 0       bits 0-7: the class; bit 8: the frame had a wrong tlast; other bits 0
    beat 1 + j   logit j, sign-extended to 32 bits (the accelerator's ``logits[j]``)
"""

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from .accelerator import Accelerator
from .result_queue import ResultQueue

WORD = 32  # bits of a result beat
CLASS_BITS = 8  # the class's bits in beat 0
ERROR_BIT = 8  # beat 0's bit saying the frame's tlast was wrong
# Answers the result queue holds, images in flight included, by design: the compact design has
# one image in flight; the streaming design at its "fast" sizes needs 4 to keep its interval
# (an image takes about four intervals; measured, docs/interface.md), its baseline 2.
DEFAULT_DEPTHS = {"streaming": 4, "compact": 2}
ERROR_COUNTER_WIDTH = 16


def default_depth(accelerator: Accelerator) -> int:
    """The result queue's depth the wrapper gets unless told: enough for ``accelerator``'s design
    to run at full rate behind a sink that takes every word at once."""
    return DEFAULT_DEPTHS.get(accelerator.design, 2)


def result_layout(classes: int, logit_shape) -> data.StructLayout:
    """What the result queue holds for one image."""
    return data.StructLayout({"klass": unsigned(CLASS_BITS), "error": unsigned(1),
                              "logits": data.ArrayLayout(logit_shape, classes)})


def result_words(klass: int, error: bool, logits) -> list[int]:
    """The beats of one result frame as unsigned 32-bit integers (what a testbench expects)."""
    mask = (1 << WORD) - 1
    return [(int(klass) & 0xFF) | (int(bool(error)) << ERROR_BIT)] + [int(v) & mask for v in logits]


def parse_result(words) -> tuple[int, bool, list[int]]:
    """The inverse of ``result_words``: class, error bit, signed logits."""
    head, *logits = (int(w) for w in words)
    return head & 0xFF, bool(head >> ERROR_BIT & 1), [w - (1 << WORD) if w >> (WORD - 1) else w for w in logits]


class AxiStreamAccelerator(wiring.Component):
    """``accelerator`` behind AXI4-Stream ports (see the module docstring).

    Parameters
    ----------
    accelerator : Accelerator
        Either design's; it becomes a submodule.
    depth : int, optional
        Results the wrapper holds: images in flight plus answers waiting for the sink
        (default: ``default_depth(accelerator)``).

    Attributes
    ----------
    s_axis_tdata, s_axis_tvalid, s_axis_tready, s_axis_tlast
        Pixels, raster order (a pixel's channels one after another), ``tlast`` on an image's last.
    m_axis_tdata, m_axis_tvalid, m_axis_tready, m_axis_tlast
        Result frames of ``beats`` 32-bit words.
    s_axis_weights_tdata, s_axis_weights_tvalid, s_axis_weights_tready, s_axis_weights_tlast
        Weight images, ``tlast`` on an image's last byte.
    tlast_error : Out(1)
        One-cycle pulse when a pixel frame's ``tlast`` is found wrong (early, or missing on its
        last pixel).
    tlast_errors : Out(16)
        Those pulses counted since reset (wrapping).
    """

    def __init__(self, accelerator: Accelerator, depth: int | None = None):
        if not isinstance(accelerator, Accelerator):
            raise TypeError(f"accelerator must be an Accelerator, not {type(accelerator).__name__}")
        depth = default_depth(accelerator) if depth is None else depth
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        network = accelerator.network
        if network.classes > 1 << CLASS_BITS:
            raise ValueError(f"{network.classes} classes do not fit the result's {CLASS_BITS}-bit class")
        if Shape.cast(accelerator.logit_shape).width > WORD:
            raise ValueError(f"a logit of {accelerator.logit_shape} does not fit a {WORD}-bit result word")
        self.accelerator = accelerator
        self.depth = depth
        self.pixels = network.pixels
        self.classes = network.classes
        self.beats = 1 + network.classes
        super().__init__({
            "s_axis_tdata": In(8), "s_axis_tvalid": In(1), "s_axis_tready": Out(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(WORD), "m_axis_tvalid": Out(1), "m_axis_tready": In(1), "m_axis_tlast": Out(1),
            "s_axis_weights_tdata": In(8), "s_axis_weights_tvalid": In(1), "s_axis_weights_tready": Out(1),
            "s_axis_weights_tlast": In(1),
            "tlast_error": Out(1),
            "tlast_errors": Out(ERROR_COUNTER_WIDTH),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = acc = self.accelerator
        layout = result_layout(self.classes, acc.logit_shape)
        m.submodules.results = results = ResultQueue(layout, self.depth)
        # The error bit of each image in flight, in start order (as the answers come).
        m.submodules.errors = errors = fifo.SyncFIFO(width=1, depth=self.depth)

        weights_open = Signal()  # a weight frame has begun and its tlast is not yet taken
        was_receiving = self._pixel_frames(m, acc, results, errors, self.s_axis_weights_tvalid | weights_open)
        self._result_frames(m, acc, results, errors)
        self._weight_frames(m, acc, weights_open, was_receiving)
        return m

    def _pixel_frames(self, m, acc, results, errors, weights_wanted):
        """One image per pixel frame; returns ``receiving`` a cycle late."""
        count = Signal(range(self.pixels))  # pixels given to the accelerator in this image
        last_pixel = count == self.pixels - 1
        was_receiving, asked = Signal(), Signal()
        m.d.sync += [was_receiving.eq(acc.receiving), asked.eq(acc.start)]
        # The cycle after the accelerator took a start: ``receiving`` rose after one was asked.
        taken = asked & acc.receiving & ~was_receiving
        pixel_in = self.s_axis_tvalid & self.s_axis_tready
        given = acc.pixels.valid & acc.pixels.ready

        # The ports are driven by plain expressions of the state, not inside the state machine:
        # Icarus never runs a combinational block none of whose inputs change, which would leave
        # an output unknown (X) from time 0 until the first frame.
        with m.FSM(name="frame") as frame:
            with m.State("IDLE"):
                with m.If(taken):
                    m.d.sync += count.eq(0)
                    m.next = "FEED"
            with m.State("FEED"):
                with m.If(given):
                    m.d.sync += count.eq(count + 1)
                    with m.If(last_pixel):
                        m.next = "IDLE"
                        with m.If(~self.s_axis_tlast):
                            m.next = "DISCARD"
                    with m.Elif(self.s_axis_tlast):
                        m.next = "PAD"
            with m.State("PAD"):  # tlast came early: zeros for the rest of the image
                with m.If(given):
                    m.d.sync += count.eq(count + 1)
                    with m.If(last_pixel):
                        m.next = "IDLE"
            with m.State("DISCARD"):  # tlast missing: drop pixels up to the next tlast
                with m.If(pixel_in & self.s_axis_tlast):
                    m.next = "IDLE"
        idle, feed, pad, discard = (frame.ongoing(state) for state in ("IDLE", "FEED", "PAD", "DISCARD"))
        m.d.comb += [
            # Start when a frame is offered and its answer has a place.
            acc.start.eq(idle & self.s_axis_tvalid & results.room & ~weights_wanted),
            results.reserve.eq(idle & taken),
            acc.pixels.payload.eq(Mux(feed, self.s_axis_tdata, 0)),
            acc.pixels.valid.eq((feed & self.s_axis_tvalid) | pad),
            self.s_axis_tready.eq((feed & acc.pixels.ready) | discard),
            # An image's input ends with its last pixel; its error bit goes with it.
            errors.w_en.eq((feed | pad) & given & last_pixel),
            errors.w_data.eq(pad | ~self.s_axis_tlast),
            self.tlast_error.eq(feed & given & (last_pixel ^ self.s_axis_tlast)),
        ]
        with m.If(self.tlast_error):
            m.d.sync += self.tlast_errors.eq(self.tlast_errors + 1)
        return was_receiving

    def _result_frames(self, m, acc, results, errors):
        """Answers into the queue at ``done``, out as frames of words."""
        m.d.comb += [
            results.i.valid.eq(acc.done),
            results.i.payload.klass.eq(acc.klass),
            results.i.payload.logits.eq(acc.logits),
            results.i.payload.error.eq(errors.r_data),
            errors.r_en.eq(acc.done),
        ]
        beat = Signal(range(self.beats))
        head = results.o.payload
        words = [Cat(head.klass, head.error).as_unsigned()]
        words += [head.logits[j].as_signed() for j in range(self.classes)]  # sign-extended below
        with m.Switch(beat):
            for k, word in enumerate(words):
                with m.Case(k):
                    m.d.comb += self.m_axis_tdata.eq(word)
        m.d.comb += [
            self.m_axis_tvalid.eq(results.o.valid),
            self.m_axis_tlast.eq(beat == self.beats - 1),
            results.o.ready.eq(self.m_axis_tready & self.m_axis_tlast),
        ]
        with m.If(self.m_axis_tvalid & self.m_axis_tready):
            m.d.sync += beat.eq(beat + 1)
            with m.If(self.m_axis_tlast):
                m.d.sync += beat.eq(0)

    def _weight_frames(self, m, acc, weights_open, was_receiving):
        """A restart pulse, then the weight frame's bytes."""
        if acc.weights_loadable:
            m.d.comb += [
                acc.weights.payload.eq(self.s_axis_weights_tdata),
                acc.weights.valid.eq(weights_open & self.s_axis_weights_tvalid),
                self.s_axis_weights_tready.eq(weights_open & acc.weights.ready),
                # No image in flight or being started (the frame machine starts none while a
                # weight frame is offered).
                acc.weights_restart.eq(~weights_open & self.s_axis_weights_tvalid & ~acc.busy & ~acc.receiving
                                       & ~was_receiving),
            ]
            with m.If(acc.weights_restart):
                m.d.sync += weights_open.eq(1)
            with m.If(self.s_axis_weights_tvalid & self.s_axis_weights_tready & self.s_axis_weights_tlast):
                m.d.sync += weights_open.eq(0)
        else:
            m.d.comb += self.s_axis_weights_tready.eq(1)  # read-only weights: frames are dropped


def axis_verilog(accelerator: Accelerator, toplevel: str, depth: int | None = None) -> str:
    """The Verilog of ``accelerator`` behind the AXI4-Stream wrapper, as module ``toplevel``."""
    from amaranth.back import verilog

    return verilog.convert(AxiStreamAccelerator(accelerator, depth), name=toplevel)
