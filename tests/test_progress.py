"""The progress helper: tqdm on a terminal, a few whole lines in a file or pipe."""

import io

from lenet_fpga.model.progress import PlainProgress, progress


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_pipe_gets_whole_lines_no_carriage_returns():
    """10,000 quick updates (no time passes) to a stream that is not a terminal: no '\\r', and
    the one line written at the end, with the final count."""
    out = io.StringIO()
    with progress(total=10_000, desc="work", unit="image", file=out) as bar:
        for _ in range(10_000):
            bar.update()
            bar.set_postfix_str("busy")
    text = out.getvalue()
    assert "\r" not in text
    assert text.splitlines() == ["work: 10,000/10,000 image, 0 s, busy"]


def test_plain_lines_are_rate_limited():
    """100 updates a second apart with a line at most every 10 s: lines at t = 10, 20, ..., 100
    (10 of them; the update at t = 100 is the last, so close has nothing left to say)."""
    out, clock = io.StringIO(), FakeClock()
    bar = PlainProgress(range(100), desc="steps", file=out, interval_s=10, clock=clock)
    for _ in bar:
        clock.now += 1
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in out.getvalue()
    assert lines[0] == "steps: 10/100 it, 10 s" and lines[-1] == "steps: 100/100 it, 100 s"


def test_quiet_writes_nothing_and_a_terminal_gets_tqdm():
    out = io.StringIO()
    with progress(total=3, file=out, disable=True) as bar:
        bar.update(3)
    assert out.getvalue() == ""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    from tqdm import tqdm

    bar = progress(total=3, file=Terminal())
    assert isinstance(bar, tqdm)
    bar.close()
