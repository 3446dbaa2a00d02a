"""Property-based fuzzing of what a user hands the tool: weight files, manifests, image files and
command lines. Whatever the input, a command ends with exit 0, or exit 2 and one line on
stderr, never a traceback; a loader raises InputError and nothing else; no file is left behind."""

from __future__ import annotations

import json
import string
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lenet_fpga.cli import main
from lenet_fpga.model import arith, images, weights
from lenet_fpga.model.errors import InputError
from lenet_fpga.model.network import Network

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SMALL = Network.parse("2,3:4")  # a tiny network keeps every example fast


def small_weights(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    params = {name: rng.integers(-50, 50, shape).astype(np.int8) for name, shape in SMALL.parameter_shapes.items()}
    path = folder / "w.npz"
    if not path.exists():
        weights.save(path, params, weights.make_manifest(arith.Arithmetic(), SMALL, accuracy={"fixed": 0.5}))
    return path


def assert_clean(code: int, err: str, command: str) -> None:
    assert "Traceback" not in err, err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"lenet-fpga {command}: error:"), err
    else:
        assert code == 0, (code, err)


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
MANIFEST_FIELDS = ["format", "format_version", "network", "q_format", "width", "frac_bits", "rounding", "overflow",
                   "float_weights", "accuracy", "training", "source"]


@FUZZ
@given(field=st.sampled_from(MANIFEST_FIELDS), value=json_values)
def test_any_manifest_field_value_loads_or_is_an_input_error(tmp_path, field, value):
    path = small_weights(tmp_path)
    manifest = json.loads(path.with_suffix(".json").read_text())
    manifest[field] = value
    bad = tmp_path / "fuzzed.npz"
    bad.write_bytes(path.read_bytes())
    bad.with_suffix(".json").write_text(json.dumps(manifest))
    try:
        weights.load(bad)
    except InputError:
        pass


@FUZZ
@given(data=st.data())
def test_damaged_weight_archives_are_input_errors(tmp_path, data):
    """Flipped, cut or stuffed bytes anywhere in a compressed or plain archive."""
    path = small_weights(tmp_path)
    rng = np.random.default_rng(1)
    params = {name: rng.integers(-50, 50, shape).astype(np.int8) for name, shape in SMALL.parameter_shapes.items()}
    compressed = tmp_path / "c.npz"
    np.savez_compressed(compressed, **params)
    source = data.draw(st.sampled_from([path, compressed]))
    raw = bytearray(source.read_bytes())
    how = data.draw(st.sampled_from(["flip", "cut", "insert"]))
    at = data.draw(st.integers(0, len(raw) - 1))
    if how == "flip":
        raw[at] ^= data.draw(st.integers(1, 255))
    elif how == "cut":
        del raw[at:]
    else:
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
    bad = tmp_path / "damaged.npz"
    bad.write_bytes(bytes(raw))
    bad.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    try:
        weights.load(bad)
    except InputError:
        pass
    try:
        images.load_image_set(bad)
    except InputError:
        pass


def test_corrupt_deflate_stream_is_an_input_error(tmp_path):
    """The case that once gave a zlib.error traceback: the archive's directory is fine, one
    member's compressed data is not."""
    params = {name: np.zeros(shape, np.int8) for name, shape in SMALL.parameter_shapes.items()}
    path = tmp_path / "w.npz"
    np.savez_compressed(path, **params)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.infolist()[0]
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for k in range(start, start + info.compress_size):
        raw[k] ^= 0x5A
    path.write_bytes(bytes(raw))
    path.with_suffix(".json").write_text(json.dumps(weights.make_manifest(arith.Arithmetic(), SMALL)))
    with pytest.raises(InputError, match="cannot read weights"):
        weights.load(path)


words = st.text(alphabet=string.ascii_letters + string.digits + ",:/.-_ ", max_size=12)


@FUZZ
@given(network=words, seed=st.one_of(st.integers(-5, 2**70).map(str), words),
       qat=st.one_of(st.integers(-5, 5).map(str), words), out=words)
def test_train_options_fail_cleanly_before_training(tmp_path, capsys, network, seed, qat, out):
    """Without MNIST (an empty --data folder) no training can start: every option mistake is
    reported before, and the run always ends in one line."""
    capsys.readouterr()
    before = files_in(tmp_path)
    (tmp_path / "empty").mkdir(exist_ok=True)
    argv = ["train", "--data", str(tmp_path / "empty"), "--network", network, "--seed", seed,
            "--qat-epochs", qat, "--out", str(tmp_path / (out or "x"))]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
        assert_clean(code, capsys.readouterr().err, "train")
        return
    captured = capsys.readouterr()
    assert code == 2
    assert_clean(code, captured.err, "train")
    assert files_in(tmp_path) - before <= {"empty"}


@FUZZ
@given(mirror=st.text(max_size=20).filter(lambda s: not s.startswith(("http", "file"))))
def test_download_mirrors_that_are_not_urls(tmp_path, capsys, mirror):
    capsys.readouterr()
    before = files_in(tmp_path)
    try:
        code = main(["download", "--data", str(tmp_path / "d"), "--mirror", mirror])
    except SystemExit as e:  # argparse's own usage errors (a mirror that looks like an option)
        code = e.code
    assert code == 2
    assert_clean(2, capsys.readouterr().err, "download")
    assert files_in(tmp_path) == before


@settings(FUZZ, max_examples=15)
@given(spec=st.one_of(st.just("real"), st.just("folder"), words), extra=st.sampled_from([[], ["--preset", "fast"], ["--lanes", "3"], ["--filters", "2"],
                                          ["--design", "compact"], ["--soft-multipliers", "fc1"]]))
def test_verilog_with_fuzzed_weights_paths_and_options(tmp_path, capsys, spec, extra):
    """A weights path that is a spec, a folder, missing, or the real small network."""
    capsys.readouterr()
    target = {"real": str(small_weights(tmp_path)), "folder": str(tmp_path)}.get(spec, str(tmp_path / spec))
    before = files_in(tmp_path)
    try:
        code = main(["verilog", "--weights", target, "-o", str(tmp_path / "out" / "a.v"), *extra])
    except SystemExit as e:
        code = e.code
    assert_clean(code, capsys.readouterr().err, "verilog")
    assert files_in(tmp_path) - before <= ({"out", "out/a.v"} if code == 0 else set())
