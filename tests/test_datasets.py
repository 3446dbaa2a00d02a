"""Data sets of the user's own (``model/datasets.py``): the two ``.npz`` layouts and the two
PNG folder layouts read the same images, every malformed set is one line (exit 2 from the
command line, nothing written), and a network trained on a small synthetic set learns it,
``eval`` measures what training recorded, and the RTL runs its weights bit-exactly."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from lenet_fpga.cli import main
from lenet_fpga.model import datasets
from lenet_fpga.model.errors import InputError
from lenet_fpga.model.network import Network
from dataset_flow import bench_on_dataset, import_float_checkpoint, run_json, sim_on_dataset, train_on_npz


def bars(n: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy grey images of 3 classes: a horizontal bar (0), a vertical bar (1), a diagonal
    (2), each at a random place, on noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (n, size, size)).astype(np.int64)
    labels = np.arange(n) % 3
    for k, label in enumerate(labels):
        at = rng.integers(3, size - 4)
        if label == 0:
            images[k, at : at + 2, 2:-2] += 180
        elif label == 1:
            images[k, 2:-2, at : at + 2] += 180
        else:
            shift = rng.integers(-3, 4)
            for i in range(2, size - 2):
                j = min(max(i + shift, 0), size - 1)
                images[k, i, j] += 180
                images[k, i, min(j + 1, size - 1)] += 180
    return np.clip(images, 0, 255).astype(np.uint8), labels


def save_pngs(folder, images, labels, names=None):
    from PIL import Image

    for k, (image, label) in enumerate(zip(images, labels)):
        where = folder / (names[label] if names else str(label))
        where.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(where / f"{k:04d}.png")


# ---- the loaders ----

def test_npz_with_its_own_test_part(tmp_path):
    images, labels = bars(40)
    np.savez(tmp_path / "d.npz", train_images=images[:30], train_labels=labels[:30],
             test_images=images[30:, None], test_labels=labels[30:])  # [N,1,S,S] too
    d = datasets.load_dataset(tmp_path / "d.npz")
    assert (d.classes, d.image_size, d.split, d.converted) == (3, 16, "own", False)
    assert np.array_equal(d.train.images, images[:30]) and np.array_equal(d.test.images, images[30:])
    assert np.array_equal(d.test.labels, labels[30:]) and d.test.labels.dtype == np.int64


def test_npz_of_one_set_is_split_the_same_way_every_time(tmp_path):
    images, labels = bars(60)
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    d = datasets.load_dataset(tmp_path / "d.npz")
    assert (len(d.train.labels), len(d.test.labels)) == (50, 10)  # 1/6
    again = datasets.load_dataset(tmp_path / "d.npz")
    assert d.digest == again.digest and np.array_equal(d.test.images, again.test.images)
    # every image in exactly one split
    both = np.concatenate([d.train.images, d.test.images]).reshape(60, -1)
    assert len({row.tobytes() for row in both}) == len({row.tobytes() for row in images.reshape(60, -1)})
    quarter = datasets.load_dataset(tmp_path / "d.npz", test_fraction=0.25)
    assert len(quarter.test.labels) == 15 and quarter.digest != d.digest


def test_png_folders_read_as_the_npz_does(tmp_path):
    images, labels = bars(24)
    save_pngs(tmp_path / "png" / "train", images[:18], labels[:18])
    save_pngs(tmp_path / "png" / "test", images[18:], labels[18:])
    d = datasets.load_dataset(tmp_path / "png")
    assert (d.classes, d.image_size, d.class_names) == (3, 16, None)  # folders 0, 1, 2 are those labels
    # each class folder in turn, its files by name: the same images as the npz, grouped by class
    order = np.argsort(labels[:18], kind="stable")
    assert np.array_equal(d.train.images, images[:18][order]) and np.array_equal(d.train.labels, labels[:18][order])
    # named classes are numbered in sorted order; one folder of classes is split
    save_pngs(tmp_path / "named", images, labels, names=["horizontal", "vertical", "diagonal"])
    named = datasets.load_dataset(tmp_path / "named")
    assert named.class_names == ("diagonal", "horizontal", "vertical")
    assert (len(named.train.labels), len(named.test.labels)) == (20, 4) and named.split != "own"
    assert set(named.train.labels) == {0, 1, 2}


def test_grey_saved_as_rgb_is_grey_and_colour_keeps_its_channels(tmp_path):
    from PIL import Image

    images, labels = bars(6)
    save_pngs(tmp_path / "set", images, labels)
    Image.fromarray(np.stack([images[0]] * 3, axis=-1)).save(tmp_path / "set" / "0" / "rgb-grey.png")
    d = datasets.load_dataset(tmp_path / "set")
    assert not d.converted and d.channels == 1  # three equal channels lose nothing
    colour = np.stack([images[1], images[2], images[3]], axis=-1)
    Image.fromarray(colour).save(tmp_path / "set" / "1" / "colour.png")
    # one colour PNG makes the set RGB: the grey PNGs become three equal channels
    d = datasets.load_dataset(tmp_path / "set", test_fraction=0.5)
    assert d.channels == 3 and d.train.images.shape[1:] == (3, 16, 16) and not d.converted
    got = np.concatenate([d.train.images, d.test.images])
    assert any(np.array_equal(x, np.moveaxis(colour, -1, 0)) for x in got)
    assert any(np.array_equal(x, np.stack([images[0]] * 3)) for x in got)
    with pytest.raises(InputError, match=r"images are RGB \(3 channels\); the network 16/6,16:120,84:3 takes grey "
                                         r"\(1 channel\): give --grey to convert the images to grey, or a network "
                                         r"with a 16x3/\.\.\. input"):
        d.fitted(Network.parse("16/6,16:120,84:3"))
    assert d.fitted(Network.parse("16x3/6,16:120,84:3")).images.shape[1:] == (3, 16, 16)
    grey = datasets.load_dataset(tmp_path / "set", grey=True)
    assert grey.converted and grey.channels == 1
    # [N,3,S,S] likewise, converted as Pillow converts
    rgb = np.stack([images[:4], images[1:5], images[2:6]], axis=1)
    np.savez(tmp_path / "rgb.npz", images=rgb, labels=labels[:4])
    kept = datasets.load_dataset(tmp_path / "rgb.npz", test_fraction=0.5)
    assert kept.channels == 3 and sorted(x.tobytes() for x in np.concatenate([kept.train.images, kept.test.images])) \
        == sorted(x.tobytes() for x in rgb)
    d = datasets.load_dataset(tmp_path / "rgb.npz", grey=True, test_fraction=0.5)
    want = np.stack([np.asarray(Image.fromarray(np.moveaxis(image, 0, -1)).convert("L")) for image in rgb])
    assert np.array_equal(datasets.luma(rgb), want)
    got = np.concatenate([d.train.images, d.test.images])
    assert d.converted and sorted(x.tobytes() for x in got) == sorted(x.tobytes() for x in want)


def test_the_api_reads_a_data_set_and_the_golden_model_runs_on_it(tmp_path):
    import lenet_fpga as lf

    images, labels = bars(12)
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    d = lf.load_dataset(tmp_path / "d.npz", test_fraction=0.5)
    result = lf.run_golden(lf.load_weights(), d.test.images, d.test.labels)  # 16x16 centred in 28x28
    assert len(result.classes) == 6 and result.accuracy is not None


def test_fits_the_network_or_says_both_sizes(tmp_path):
    images, labels = bars(12)
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    d = datasets.load_dataset(tmp_path / "d.npz")
    train = d.fitted(Network.parse("20/4,8:24:3"), "train")  # centred in a larger input
    assert train.images.shape[1:] == (20, 20) and np.array_equal(train.images[:, 2:18, 2:18], d.train.images)
    with pytest.raises(InputError, match="16x16 images; the network 12/4:8:3 takes 12x12"):
        d.fitted(Network.parse("12/4:8:3"))
    with pytest.raises(InputError, match="3 classes; the network 16/4,8:24:2 has 2 outputs"):
        d.fitted(Network.parse("16/4,8:24:2"))
    assert Network.parse("4,8:24", image_size=16, classes=3).spec == "16/4,8:24:3"
    assert d.default_network().spec == "16/6,16:120,84:3"


def _npz(**arrays):
    return arrays


IMAGES, LABELS = bars(12)
BAD_NPZ = [
    (_npz(images=IMAGES.astype(np.float32) / 255, labels=LABELS), "must be uint8 pixels 0..255, not float32"),
    (_npz(images=IMAGES[:, :, :15], labels=LABELS), "square"),
    (_npz(images=np.zeros((12, 17, 16, 16), np.uint8), labels=LABELS), "17 channels ([12, 17, 16, 16]); a network takes 1 to 16"),
    (_npz(train_images=IMAGES, train_labels=LABELS, test_images=np.stack([IMAGES] * 3, 1), test_labels=LABELS),
     "the training images are grey (1 channel), the test images RGB (3 channels)"),
    (_npz(images=IMAGES, labels=LABELS[:11]), "one label per image"),
    (_npz(images=IMAGES, labels=LABELS - 1), "label -1"),
    (_npz(images=IMAGES, labels=LABELS.astype(np.float64)), "whole numbers"),
    (_npz(images=IMAGES, labels=LABELS * 0), "at least 2 classes"),
    (_npz(images=IMAGES[:0], labels=LABELS[:0]), "no images"),
    (_npz(images=IMAGES, labels=LABELS, extra=LABELS), "unexpected array(s) extra"),
    (_npz(pictures=IMAGES, labels=LABELS), "must hold train_images"),
    (_npz(train_images=IMAGES, train_labels=LABELS, test_images=IMAGES[:, :8, :8], test_labels=LABELS),
     "the test images 8x8"),
    (_npz(images=IMAGES[:1], labels=LABELS[:1]), "at least 2 are needed"),
]


@pytest.mark.parametrize("arrays, message", BAD_NPZ, ids=[m for _, m in BAD_NPZ])
def test_a_bad_npz_is_one_line_from_every_command(tmp_path, capsys, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError, match=None) as error:
        datasets.load_dataset(tmp_path / "bad.npz")
    assert message in str(error.value)
    out = tmp_path / "w.npz"
    for argv in (["train", "--dataset", str(tmp_path / "bad.npz"), "--out", str(out)],
                 ["eval", "--dataset", str(tmp_path / "bad.npz")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]


def test_object_arrays_are_never_unpickled(tmp_path):
    np.savez(tmp_path / "obj.npz", images=np.array([IMAGES[0], "x"], dtype=object), labels=LABELS[:2])
    with pytest.raises(InputError, match="cannot read data set"):
        datasets.load_dataset(tmp_path / "obj.npz")


def test_bad_folders_and_paths(tmp_path):
    from PIL import Image

    def refused(path, message, **kw):
        with pytest.raises(InputError) as error:
            datasets.load_dataset(path, **kw)
        assert message in str(error.value), str(error.value)

    refused(tmp_path / "nowhere", "data set not found")
    os.mkfifo(tmp_path / "fifo")
    refused(tmp_path / "fifo", "is a FIFO")  # never opened: it would block
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "no class folders")
    save_pngs(tmp_path / "half" / "train", IMAGES, LABELS)
    refused(tmp_path / "half", "has train/ but no test/")
    save_pngs(tmp_path / "sizes", IMAGES, LABELS)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "sizes" / "1" / "big.png")
    refused(tmp_path / "sizes", "different sizes (16x16, 20x20)")
    save_pngs(tmp_path / "oblong", IMAGES, LABELS)
    Image.fromarray(np.zeros((16, 12), np.uint8)).save(tmp_path / "oblong" / "2" / "x.png")
    refused(tmp_path / "oblong", "is 12x16; images must be square")
    save_pngs(tmp_path / "notpng", IMAGES, LABELS)
    (tmp_path / "notpng" / "0" / "fake.png").write_bytes(b"GIF89a not a png")
    refused(tmp_path / "notpng", "cannot read image")
    save_pngs(tmp_path / "deep", IMAGES, LABELS)
    Image.fromarray(np.zeros((16, 16), np.uint16)).save(tmp_path / "deep" / "0" / "deep.png")
    refused(tmp_path / "deep", "16-bit or more")
    save_pngs(tmp_path / "huge", IMAGES, LABELS)  # refused from its header, before 4 MB of pixels are inflated
    Image.fromarray(np.zeros((2000, 2000), np.uint8)).save(tmp_path / "huge" / "0" / "huge.png")
    refused(tmp_path / "huge", "is 2000x2000; at most 1024x1024")
    save_pngs(tmp_path / "hollow", IMAGES, LABELS)
    (tmp_path / "hollow" / "3").mkdir()
    refused(tmp_path / "hollow", "has no .png files")
    save_pngs(tmp_path / "own", IMAGES, LABELS)
    refused(tmp_path / "own" / "0" / "0000.png", "cannot read data set")  # a PNG is not a data set
    np.savez(tmp_path / "both.npz", train_images=IMAGES, train_labels=LABELS, test_images=IMAGES,
             test_labels=LABELS)
    refused(tmp_path / "both.npz", "has its own test images", test_fraction=0.2)


def test_option_mixes_are_one_line(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", images=IMAGES, labels=LABELS)
    np.savez(tmp_path / "big.npz", images=np.zeros((4, 32, 32), np.uint8), labels=np.arange(4) % 2)
    for argv, message in (
        (["eval", "--dataset", str(tmp_path / "d.npz"), "--data", str(tmp_path)], "give one"),
        (["eval", "--grey"], "--grey and --test-fraction are for --dataset"),
        (["eval", "--dataset", str(tmp_path / "big.npz")], "32x32 images; the network 6,16:120,84 takes 28x28"),
        (["sim", "--dataset", str(tmp_path / "d.npz"), "--mnist"], "--mnist and --dataset both name the images"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


# ---- end to end ----

@pytest.mark.torch
def test_train_eval_compress_bench_and_sim_on_a_data_set_of_ones_own(tmp_path, capsys, simulator, sim_build):
    """Train a small network on 360 synthetic 16x16 images of 3 classes (the network's image size
    and classes are the data set's), evaluate it, run 4 of the test images through the RTL,
    bench, compress and import it, every step on the data set's 60 test images."""
    images, labels = bars(360, seed=1)
    data, out, trained = train_on_npz(tmp_path, capsys, images, labels, "4,8:24", epochs=6, qat_epochs=2)
    assert trained["network"] == "16/4,8:24:3" and trained["n_images"] == 60
    assert trained["fixed_accuracy"] > 0.8  # chance is 1/3
    manifest = json.loads(out.with_suffix(".json").read_text())
    recorded = manifest["dataset"]
    assert recorded["digest"] == datasets.load_dataset(data).digest
    assert (recorded["image_size"], recorded["classes"], recorded["train_images"]) == (16, 3, 300)

    result = run_json(capsys, "eval", "--dataset", data, "--weights", out)
    assert result["fixed_accuracy"] == result["recorded_accuracy"] == trained["fixed_accuracy"]
    assert result["n_images"] == 60 and result["dataset"]["digest"] == recorded["digest"]

    sim_on_dataset(capsys, data, out, simulator, sim_build, classes=3)

    doc = bench_on_dataset(capsys, data, out, simulator, sim_build)
    (row,) = doc["configs"]
    assert doc["accuracy_images"] == 60 and doc["dataset"]["digest"] == recorded["digest"]
    assert row["accuracy"] == trained["fixed_accuracy"] and row["rtl"]["mismatches"] == 0
    assert doc["rtl_image_sources"] == [f"test images of {data}"]

    small = tmp_path / "small.npz"
    compressed = run_json(capsys, "compress", "--weights", out, "--dataset", data, "--out", small, "--codes", "all=4",
                          "--epochs", 1, "--search-images", 100, "--batch-size", 16, "--threads", 1)
    assert compressed["n_images"] == 60 and compressed["fixed_accuracy"] > 0.8
    assert json.loads(small.with_suffix(".json").read_text())["dataset"]["digest"] == recorded["digest"]

    # the float checkpoint as a state dict: import takes the data set's image size and images
    imported = import_float_checkpoint(tmp_path, capsys, data)
    assert imported["network"] == "16/4,8:24:3" and imported["n_images"] == 60
    assert imported["float_accuracy"] == trained["float_accuracy"]
