"""`lenet-fpga classify`: a user's own picture made into an MNIST-style digit and classified."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lenet_fpga.cli import main
from lenet_fpga.model import digits, images
from lenet_fpga.model.errors import InputError

SAMPLES = images.load_image_set()


def drawn_seven(path, size=(80, 100)):
    picture = Image.new("L", size, 230)  # dark pen on light paper
    ImageDraw.Draw(picture).line([(15, 15), (65, 15), (35, 90)], fill=20, width=9)
    picture.save(path)
    return path


def test_prepare_makes_an_mnist_style_digit(tmp_path):
    """White on black, the ink's bounding box 20 pixels on its long side, its mass in the middle."""
    digit = digits.prepare(digits.load_picture(drawn_seven(tmp_path / "seven.png")))
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    assert digit[0].max() == 0 and digit[:, 0].max() == 0 and digit.max() > 200  # black border, white ink
    rows, cols = np.nonzero(digit > 50)
    assert 18 <= max(np.ptp(rows), np.ptp(cols)) + 1 <= 22
    mass = digit.astype(float)
    cy = (mass.sum(axis=1) * np.arange(28)).sum() / mass.sum()
    cx = (mass.sum(axis=0) * np.arange(28)).sum() / mass.sum()
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1


def test_enlarged_inverted_mnist_digits_keep_their_class(tmp_path, capsys):
    """Shipped test digits as a user might have them (4x larger, black on white, as PNG files):
    the classes are the digits' labels."""
    paths = []
    for k in range(10):
        picture = Image.fromarray(255 - SAMPLES.images[4 * k]).resize((112, 112), Image.NEAREST)
        paths.append(tmp_path / f"digit{k}.png")
        picture.save(paths[-1])
    assert main(["classify", *map(str, paths), "--json"]) == 0
    answers = json.loads(capsys.readouterr().out)["pictures"]
    right = sum(a["class"] == int(SAMPLES.labels[4 * k]) for k, a in enumerate(answers))
    assert right >= 9, [a["class"] for a in answers]


def test_classify_on_the_rtl(tmp_path, capsys, simulator):
    assert main(["classify", str(drawn_seven(tmp_path / "seven.png")), "--rtl", "--simulator", simulator,
                 "--json"]) == 0
    (answer,) = json.loads(capsys.readouterr().out)["pictures"]
    assert answer["class"] == answer["rtl_class"] == 7 and answer["match"]


@pytest.mark.parametrize("content, message", [(b"not a picture", "cannot read"), (None, "picture not found")])
def test_bad_pictures_are_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    assert main(["classify", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lenet-fpga classify: error:") and message in err and len(err.strip().splitlines()) == 1


def test_a_blank_picture_has_no_ink():
    with pytest.raises(InputError, match="no ink"):
        digits.prepare(np.full((30, 30), 200, np.uint8))


def test_centring_by_mass_loses_and_wraps_no_ink():
    """A heavy bar on a thin stem (a T): its centre of mass is near the top, so shifting the mass
    to the middle would push the stem's foot past the bottom edge. By hand: the 100x100 ink box
    scales by 20/100 into a 20x20 box placed at rows 4..23; the bar's 30 rows become rows 4..9,
    carrying ~120 of the ~131 units of ink, so the mass sits near row (120 * 6.5 + 11 * 16.5) / 131
    ~ 7.3 and centring wants ~6 rows down; the box's foot may go 4 rows down (to row 27). So the
    ink ends up in rows 8..27 exactly: nothing wraps round to the top rows, nothing is cut off."""
    picture = np.zeros((120, 120), np.uint8)
    picture[10:40, 10:110] = 255  # the bar: 30 rows x 100 columns
    picture[40:110, 58:62] = 255  # the stem: 70 rows x 4 columns, centred under the bar
    digit = digits.prepare(picture)
    rows = np.nonzero(digit.max(axis=1))[0]
    assert (rows.min(), rows.max()) == (8, 27)
    assert digit[:8].max() == 0  # no ink wrapped round from the bottom
    assert digit[8:14].mean() > 100 and digit[27].max() > 0  # the bar at the top, the stem's foot kept
