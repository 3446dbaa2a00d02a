"""Integer weight files: NAME.npz + NAME.json (model/weights.py)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lenet_fpga.model import arith, network, weights
from lenet_fpga.model.errors import InputError

SHAPES = network.parameter_shapes()


@pytest.fixture
def params(random_params):
    return random_params(np.random.default_rng(0), 127)


@pytest.fixture
def manifest():
    return weights.make_manifest(arith.Arithmetic("floor", "wrap"), accuracy={"fixed": 0.5}, seed=3)


@pytest.fixture
def saved(tmp_path, params, manifest) -> Path:
    return weights.save(tmp_path / "w.npz", params, manifest)


def write_manifest(npz: Path, **changes) -> None:
    path = npz.with_suffix(".json")
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


# --------------------------------------------------------------------------------------------
# Round trip


def test_parameter_shapes_are_lenet5():
    assert SHAPES == {
        "conv1.weight": (6, 1, 5, 5),
        "conv1.bias": (6,),
        "conv2.weight": (16, 6, 5, 5),
        "conv2.bias": (16,),
        "fc1.weight": (120, 256),
        "fc1.bias": (120,),
        "fc2.weight": (84, 120),
        "fc2.bias": (84,),
        "fc3.weight": (10, 84),
        "fc3.bias": (10,),
    }


def test_save_and_load_round_trip(tmp_path, params, manifest):
    path = tmp_path / "sub" / "w.npz"  # the folder is created
    assert weights.save(path, params, manifest) == path
    assert sorted(p.name for p in path.parent.iterdir()) == ["w.json", "w.npz"]  # no temporaries left
    ws = weights.load(path)
    assert ws.path == path
    assert ws.manifest == manifest
    assert ws.params.keys() == params.keys()
    for name, value in params.items():
        assert ws[name].dtype == np.int8 and ws[name].shape == SHAPES[name]
        assert np.array_equal(ws[name], value)
    assert ws.arithmetic == arith.Arithmetic("floor", "wrap")


def test_npz_is_a_plain_state_dict(saved, params):
    """Any numpy user can read the arrays; the manifest is plain JSON beside them."""
    with np.load(saved, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(SHAPES)
        assert all(np.array_equal(npz[name], params[name]) for name in SHAPES)
    data = json.loads(saved.with_suffix(".json").read_text())
    assert data["format"] == "lenet-fpga-weights" and data["format_version"] == 2
    assert data["network"] == {"image_size": 28, "convs": [{"channels": 6, "kernel": 5, "pool": 2},
                                                           {"channels": 16, "kernel": 5, "pool": 2}],
                               "hidden": [120, 84], "classes": 10}
    assert (data["q_format"], data["width"], data["frac_bits"]) == ("Q2.6", 8, 6)
    assert (data["rounding"], data["overflow"]) == ("floor", "wrap")
    assert data["seed"] == 3


def test_save_overwrites(saved, random_params, manifest):
    other = random_params(np.random.default_rng(1), 5)
    weights.save(saved, other, {**manifest, "seed": 4})
    ws = weights.load(saved)
    assert np.array_equal(ws["fc1.weight"], other["fc1.weight"]) and ws.manifest["seed"] == 4


def test_manifest_without_arithmetic_defaults_to_half_up_saturate():
    assert weights.WeightSet(params={}).arithmetic == arith.Arithmetic("half-up", "saturate")


def test_manifest_path():
    assert weights.manifest_path("a/b/lenet.npz") == Path("a/b/lenet.json")


# --------------------------------------------------------------------------------------------
# load errors


def test_missing_npz(tmp_path):
    with pytest.raises(InputError, match="weights file not found: .*nope.npz"):
        weights.load(tmp_path / "nope.npz")


def test_missing_manifest(saved):
    saved.with_suffix(".json").unlink()
    with pytest.raises(InputError, match=r"weights manifest not found: .*w\.json"):
        weights.load(saved)


@pytest.mark.parametrize("version", [0, 3, "1", None, True])
def test_wrong_format_version(saved, version):
    write_manifest(saved, format_version=version)
    with pytest.raises(InputError, match="format version .*this lenet-fpga reads versions 1, 2"):
        weights.load(saved)


def test_not_our_manifest(saved):
    write_manifest(saved, format="something-else")
    with pytest.raises(InputError, match="is not a lenet-fpga weights manifest"):
        weights.load(saved)
    saved.with_suffix(".json").write_text("[1, 2, 3]")
    with pytest.raises(InputError, match="is not a lenet-fpga weights manifest"):
        weights.load(saved)


@pytest.mark.parametrize("text", ["{not json", "", "\x00\x01", '{"format": '])
def test_manifest_not_json(saved, text):
    saved.with_suffix(".json").write_text(text)
    with pytest.raises(InputError, match="is not valid JSON"):
        weights.load(saved)


def test_manifest_not_utf8(saved):
    saved.with_suffix(".json").write_bytes(b"\xff\xfe\xfa{}")
    with pytest.raises(InputError, match="is not valid JSON"):
        weights.load(saved)


def test_manifest_for_another_q_format(saved):
    write_manifest(saved, frac_bits=5)
    with pytest.raises(InputError, match="must be Q2.6 codes .* gives width 8, frac_bits 5"):
        weights.load(saved)
    write_manifest(saved, frac_bits=6, width=16)
    with pytest.raises(InputError, match="must be Q2.6 codes .* gives width 16, frac_bits 6"):
        weights.load(saved)


@pytest.mark.parametrize(("key", "value"), [("rounding", "nearest"), ("overflow", "clamp"), ("rounding", None)])
def test_manifest_with_unknown_arithmetic(saved, key, value):
    write_manifest(saved, **{key: value})
    with pytest.raises(InputError, match=r"w\.json"):
        weights.load(saved)


def save_raw(path: Path, arrays: dict, manifest: dict) -> Path:
    """Write an .npz + manifest directly, bypassing weights.save's checks."""
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    path.with_suffix(".json").write_text(json.dumps(manifest))
    return path


def test_load_wrong_shape(tmp_path, params, manifest):
    bad = {**params, "fc1.weight": np.zeros((120, 255), np.int8)}
    path = save_raw(tmp_path / "w.npz", bad, manifest)
    with pytest.raises(InputError, match=r"fc1.weight has shape \[120, 255\], the network 6,16:120,84 needs \[120, 256\]"):
        weights.load(path)


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.int32, np.float32, np.float64])
def test_load_wrong_dtype(tmp_path, params, manifest, dtype):
    bad = {**params, "conv2.bias": params["conv2.bias"].astype(dtype)}
    path = save_raw(tmp_path / "w.npz", bad, manifest)
    with pytest.raises(InputError, match=f"conv2.bias has dtype {np.dtype(dtype)}, expected int8"):
        weights.load(path)


def test_load_missing_key(tmp_path, params, manifest):
    bad = {k: v for k, v in params.items() if k != "fc3.bias"}
    path = save_raw(tmp_path / "w.npz", bad, manifest)
    with pytest.raises(InputError, match=r"missing \['fc3.bias'\]"):
        weights.load(path)


def test_load_unexpected_key(tmp_path, params, manifest):
    path = save_raw(tmp_path / "w.npz", {**params, "fc4.weight": np.zeros((2, 2), np.int8)}, manifest)
    with pytest.raises(InputError, match=r"unexpected \['fc4.weight'\]"):
        weights.load(path)


def test_load_object_array_is_refused(tmp_path, params, manifest):
    bad = {**params, "fc3.bias": np.array([object()] * 10, dtype=object)}
    path = tmp_path / "w.npz"
    with open(path, "wb") as f:
        np.savez(f, **bad)  # pickled
    path.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="cannot read weights"):
        weights.load(path)


@pytest.mark.parametrize(
    "damage",
    ["empty", "text", "truncated-half", "truncated-end", "flipped-data"],
)
def test_load_corrupt_npz(saved, damage):
    data = bytearray(saved.read_bytes())
    if damage == "empty":
        data = b""
    elif damage == "text":
        data = b"this is not a zip file\n" * 10
    elif damage == "truncated-half":
        data = data[: len(data) // 2]
    elif damage == "truncated-end":
        data = data[:-10]
    else:  # a byte in the middle of the stored array data: the zip CRC no longer matches
        data[len(data) // 2] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"cannot read weights .*w\.npz"):
        weights.load(saved)


def rewrite_member(npz: Path, member: str, change) -> None:
    """Replace one .npy inside the .npz by change(bytes), with a correct zip CRC."""
    with zipfile.ZipFile(io.BytesIO(npz.read_bytes())) as zin:
        members = {info.filename: zin.read(info.filename) for info in zin.infolist()}
    members[member] = change(members[member])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zout:
        for name, data in members.items():
            zout.writestr(name, data)
    npz.write_bytes(buffer.getvalue())


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b[:5],  # .npy cut inside its magic string
        lambda b: b[:40],  # cut inside the header
        lambda b: b[:-3],  # data shorter than the header promises
        lambda b: b"\x93NUMPY\x09\x00" + b[8:],  # unknown .npy version
        lambda b: b.replace(b"'descr'", b"'dexcr'", 1),  # header dict without descr
        lambda b: b.replace(b"False", b"Flase", 1),  # header is not a Python literal
    ],
    ids=["cut-magic", "cut-header", "short-data", "bad-version", "bad-key", "bad-literal"],
)
def test_load_npz_with_a_damaged_member(saved, change):
    rewrite_member(saved, "conv1.bias.npy", change)
    # (a member without the .npy magic comes back from np.load as raw bytes: a shape error)
    with pytest.raises(InputError, match=r"cannot read weights .*w\.npz|conv1\.bias has shape \[\]"):
        weights.load(saved)


def test_load_npz_whose_npy_header_has_an_unclosed_brace(saved):
    """numpy retries an unparsable version 1.0 header with Python's tokenizer, whose TokenError
    (not a ValueError) escapes for an unbalanced bracket."""
    rewrite_member(saved, "conv1.bias.npy", lambda b: b.replace(b"}", b" ", 1))
    with pytest.raises(InputError, match=r"cannot read weights .*w\.npz"):
        weights.load(saved)


# --------------------------------------------------------------------------------------------
# save errors: nothing half-written


def test_save_wrong_shape_writes_nothing(tmp_path, params, manifest):
    bad = {**params, "conv1.weight": np.zeros((6, 1, 3, 3), np.int8)}
    with pytest.raises(InputError, match="conv1.weight has shape"):
        weights.save(tmp_path / "w.npz", bad, manifest)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_save_wrong_dtype_writes_nothing(tmp_path, params, manifest, dtype):
    bad = {**params, "fc2.weight": params["fc2.weight"].astype(dtype)}
    with pytest.raises(InputError, match="fc2.weight has dtype"):
        weights.save(tmp_path / "w.npz", bad, manifest)
    assert list(tmp_path.iterdir()) == []


def test_save_missing_key_writes_nothing(tmp_path, params, manifest):
    bad = {k: v for k, v in params.items() if k != "conv1.bias"}
    with pytest.raises(InputError, match="missing"):
        weights.save(tmp_path / "w.npz", bad, manifest)
    assert list(tmp_path.iterdir()) == []


def test_save_wrong_shape_keeps_the_old_files(saved, params, manifest):
    before = (saved.read_bytes(), saved.with_suffix(".json").read_bytes())
    with pytest.raises(InputError):
        weights.save(saved, {**params, "fc3.bias": np.zeros(9, np.int8)}, manifest)
    assert (saved.read_bytes(), saved.with_suffix(".json").read_bytes()) == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["w.json", "w.npz"]


def test_save_needs_npz_suffix(tmp_path, params, manifest):
    with pytest.raises(InputError, match="must end in .npz"):
        weights.save(tmp_path / "w.bin", params, manifest)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# float checkpoint named by the manifest


def test_load_float(tmp_path, params, manifest, random_params):
    floats = {k: v.astype(np.float32) / 64 for k, v in params.items()}
    with open(tmp_path / "w-float.npz", "wb") as f:
        np.savez(f, **floats)
    ws = weights.load(weights.save(tmp_path / "w.npz", params, {**manifest, "float_weights": "w-float.npz"}))
    loaded = weights.load_float(ws)
    assert loaded.keys() == floats.keys() and all(np.array_equal(loaded[k], floats[k]) for k in floats)
    # absent file or no entry: None
    (tmp_path / "w-float.npz").unlink()
    assert weights.load_float(ws) is None
    assert weights.load_float(weights.WeightSet(params=params, manifest=manifest, path=tmp_path / "w.npz")) is None
