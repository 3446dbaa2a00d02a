"""MNIST reading and downloading (model/mnist.py). Downloads only ever go to a local http.server."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import shutil
import socket
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from lenet_fpga.model import mnist
from lenet_fpga.model.errors import InputError

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared/data/mnist"  # as in conftest.py
MNIST_FILES = tuple(mnist.FILES)

# Published class counts of the MNIST splits (LeCun et al.; also in shared/data/mnist/SOURCE.txt).
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def md5_of(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def idx_bytes(magic: int, dims, data: bytes | None = None) -> bytes:
    """An uncompressed IDX file: big-endian magic, dimensions, then the uint8 data."""
    if data is None:
        data = bytes(int(np.prod(dims)))
    return struct.pack(f">i{len(dims)}i", magic, *dims) + data


def write_gz(path: Path, raw: bytes) -> Path:
    path.write_bytes(gzip.compress(raw, compresslevel=1))
    return path


# --------------------------------------------------------------------------------------------
# The real files


def test_shared_files_are_the_originals(mnist_dir):
    for name in MNIST_FILES:
        assert md5_of(mnist_dir / name) == mnist.FILES[name]


def test_load_test_split(mnist_test):
    images, labels = mnist_test.images, mnist_test.labels
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == TEST_COUNTS
    assert images.min() == 0 and images.max() == 255


def test_load_train_split(mnist_dir):
    split = mnist.load("train", mnist_dir)
    assert split.images.shape == (60000, 28, 28) and split.images.dtype == np.uint8
    assert np.bincount(split.labels, minlength=10).tolist() == TRAIN_COUNTS


def test_load_matches_a_direct_idx_parse(mnist_dir, mnist_test):
    """Spot check against an independent parse of the IDX bytes."""
    raw = gzip.decompress((mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes())
    assert struct.unpack(">4i", raw[:16]) == (2051, 10000, 28, 28)
    first = np.frombuffer(raw[16 : 16 + 784], np.uint8).reshape(28, 28)
    last = np.frombuffer(raw[-784:], np.uint8).reshape(28, 28)
    assert np.array_equal(mnist_test.images[0], first) and np.array_equal(mnist_test.images[-1], last)
    labels = gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert mnist_test.labels[:20].tolist() == list(labels[8:28])


def test_default_data_dir(monkeypatch, tmp_path):
    """$LENET_FPGA_DATA first, then the user's data folder: never a path next to the checkout."""
    monkeypatch.setenv(mnist.ENV_DATA, str(tmp_path))
    assert mnist.default_data_dir() == tmp_path
    monkeypatch.delenv(mnist.ENV_DATA)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert mnist.default_data_dir() == tmp_path / "xdg" / "lenet-fpga" / "mnist"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert mnist.default_data_dir() == tmp_path / "home" / ".local" / "share" / "lenet-fpga" / "mnist"


def test_load_unknown_split(tmp_path):
    with pytest.raises(InputError, match="unknown MNIST split 'validation'"):
        mnist.load("validation", tmp_path)


def test_load_from_an_empty_folder(tmp_path):
    with pytest.raises(InputError, match="MNIST file not found.*lenet-fpga download"):
        mnist.load("test", tmp_path)


def test_load_rejects_files_failing_md5(tmp_path):
    write_gz(tmp_path / "t10k-images-idx3-ubyte.gz", idx_bytes(2051, (10, 28, 28)))
    write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(2049, (10,)))
    with pytest.raises(InputError, match="t10k-images-idx3-ubyte.gz fails its md5 check"):
        mnist.load("test", tmp_path)


def test_load_without_md5_reads_any_well_formed_files(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 10000, dtype=np.uint8)
    write_gz(tmp_path / "t10k-images-idx3-ubyte.gz", idx_bytes(2051, (10000, 28, 28), images.tobytes()))
    write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(2049, (10000,), labels.tobytes()))
    split = mnist.load("test", tmp_path, verify_md5=False)
    assert np.array_equal(split.images, images) and np.array_equal(split.labels, labels)
    # ... but still checks the labels
    labels[123] = 10
    write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(2049, (10000,), labels.tobytes()))
    with pytest.raises(InputError, match="beyond 9"):
        mnist.load("test", tmp_path, verify_md5=False)


def test_load_without_md5_checks_the_image_size(tmp_path):
    write_gz(tmp_path / "t10k-images-idx3-ubyte.gz", idx_bytes(2051, (10000, 28, 27)))
    write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(2049, (10000,)))
    with pytest.raises(InputError, match="not 28x28"):
        mnist.load("test", tmp_path, verify_md5=False)


# --------------------------------------------------------------------------------------------
# read_idx on small synthetic files


def test_read_idx_reads_a_good_file(tmp_path):
    data = bytes(range(5 * 4 * 3))
    path = write_gz(tmp_path / "images.gz", idx_bytes(2051, (5, 4, 3), data))
    array = mnist.read_idx(path, 2051, 5)
    assert array.dtype == np.uint8 and array.shape == (5, 4, 3)
    assert array.ravel().tolist() == list(data)
    labels = mnist.read_idx(write_gz(tmp_path / "labels.gz", idx_bytes(2049, (4,), b"\x01\x02\x03\x09")), 2049)
    assert labels.tolist() == [1, 2, 3, 9]


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(InputError, match="MNIST file not found: .*nothing.gz"):
        mnist.read_idx(tmp_path / "nothing.gz", 2051)


def test_read_idx_truncated_gzip(tmp_path):
    gz = gzip.compress(idx_bytes(2051, (50, 28, 28), bytes(range(256)) * 153 + bytes(50 * 784 - 256 * 153)))
    path = tmp_path / "truncated.gz"
    for cut in (len(gz) // 2, len(gz) - 4, 12):
        path.write_bytes(gz[:cut])
        with pytest.raises(InputError, match="truncated.gz is corrupt or truncated"):
            mnist.read_idx(path, 2051, 50)


def test_read_idx_not_gzip(tmp_path):
    path = tmp_path / "plain.gz"
    path.write_bytes(idx_bytes(2049, (3,)))  # uncompressed
    with pytest.raises(InputError, match="plain.gz is corrupt"):
        mnist.read_idx(path, 2049)


def test_read_idx_bad_crc(tmp_path):
    gz = bytearray(gzip.compress(idx_bytes(2049, (100,), bytes(range(100)))))
    gz[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    path = tmp_path / "crc.gz"
    path.write_bytes(bytes(gz))
    with pytest.raises(InputError, match="crc.gz is corrupt"):
        mnist.read_idx(path, 2049)


def test_read_idx_corrupt_deflate_stream(tmp_path):
    """A valid gzip header followed by garbage where the compressed data should be.

    gzip raises zlib.error here, which is neither OSError nor EOFError.
    """
    header = gzip.compress(b"")[:10]
    path = tmp_path / "garbage.gz"
    path.write_bytes(header + b"\xff" * 64)
    with pytest.raises(InputError, match="garbage.gz is corrupt"):
        mnist.read_idx(path, 2051)


def test_read_idx_bad_magic(tmp_path):
    path = write_gz(tmp_path / "labels-as-images.gz", idx_bytes(2049, (5, 28, 28)))
    with pytest.raises(InputError, match="labels-as-images.gz has magic number 2049, expected 2051"):
        mnist.read_idx(path, 2051)


def test_read_idx_header_too_short(tmp_path):
    path = write_gz(tmp_path / "short.gz", struct.pack(">ii", 2051, 5))
    with pytest.raises(InputError, match="short.gz is too short for an IDX header"):
        mnist.read_idx(path, 2051)
    empty = write_gz(tmp_path / "empty.gz", b"")
    with pytest.raises(InputError, match="too short"):
        mnist.read_idx(empty, 2049)


def test_read_idx_wrong_count(tmp_path):
    path = write_gz(tmp_path / "three.gz", idx_bytes(2049, (3,)))
    with pytest.raises(InputError, match="three.gz holds 3 items, expected 5"):
        mnist.read_idx(path, 2049, 5)
    assert mnist.read_idx(path, 2049).shape == (3,)  # no count given: any count is fine


@pytest.mark.parametrize(("extra", "found"), [(-1, 59), (+1, 61), (-60, 0)])
def test_read_idx_data_length_mismatch(tmp_path, extra, found):
    data = bytes(60 + extra)
    path = write_gz(tmp_path / "length.gz", struct.pack(">4i", 2051, 5, 4, 3) + data)
    with pytest.raises(InputError, match=f"length.gz has {found} data bytes, its header promises 60"):
        mnist.read_idx(path, 2051, 5)


# --------------------------------------------------------------------------------------------
# download from a local http.server


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list  # set per server

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()


class TruncatingHandler(QuietHandler):
    """Promises the whole file in Content-Length, sends half of it, hangs up."""

    def do_GET(self):
        self.requests.append(self.path)
        path = Path(self.directory) / self.path.lstrip("/")
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


@contextlib.contextmanager
def serve(directory: Path, handler=QuietHandler):
    """Serve ``directory`` on 127.0.0.1 (a free port) in a thread; yield (mirror URL, request log)."""
    requests: list[str] = []
    cls = type("Handler", (handler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: cls(*a, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch):
    """urllib honours *_proxy variables; the local mirror must be reached directly."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture(scope="module")
def mirror_dir(mnist_dir, tmp_path_factory) -> Path:
    """Copies of the four original files, to serve."""
    folder = tmp_path_factory.mktemp("mirror")
    for name in MNIST_FILES:
        shutil.copyfile(mnist_dir / name, folder / name)
    return folder


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part") or p.name.startswith("."))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_from_a_local_mirror(mirror_dir, mnist_dir, tmp_path):
    target = tmp_path / "new" / "mnist"  # created by download
    seen = {}

    def progress(name, done, total):
        assert done <= total
        seen[name] = (done, total)

    with serve(mirror_dir) as (url, requests):
        fetched = mnist.download(target, mirror=url, progress=progress, timeout=30)
        assert fetched == [target / name for name in mnist.FILES]
        assert sorted(requests) == sorted(f"/{name}" for name in MNIST_FILES)
        for name in MNIST_FILES:
            assert md5_of(target / name) == md5_of(mnist_dir / name) == mnist.FILES[name]
            size = (mnist_dir / name).stat().st_size
            assert seen[name] == (size, size)
        assert leftovers(target) == []

        # everything is there: a second call fetches nothing and asks the server for nothing
        requests.clear()
        assert mnist.download(target, mirror=url.rstrip("/"), timeout=30) == []
        assert requests == []
    assert mnist.load("test", target).labels.shape == (10000,)


def test_download_replaces_only_a_bad_file(mirror_dir, tmp_path):
    target = tmp_path / "mnist"
    target.mkdir()
    for name in MNIST_FILES:
        shutil.copyfile(mirror_dir / name, target / name)
    (target / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the labels")
    with serve(mirror_dir) as (url, requests):
        assert mnist.download(target, mirror=url, timeout=30) == [target / "t10k-labels-idx1-ubyte.gz"]
        assert requests == ["/t10k-labels-idx1-ubyte.gz"]
    assert md5_of(target / "t10k-labels-idx1-ubyte.gz") == mnist.FILES["t10k-labels-idx1-ubyte.gz"]


def corrupt_mirror(mirror_dir: Path, folder: Path) -> Path:
    """A mirror whose train labels have one byte flipped (the big train images are not served)."""
    folder.mkdir()
    data = bytearray((mirror_dir / "train-labels-idx1-ubyte.gz").read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(bytes(data))
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copyfile(mirror_dir / name, folder / name)
    return folder


def target_with_train_images(mirror_dir: Path, folder: Path) -> Path:
    folder.mkdir()
    shutil.copyfile(mirror_dir / "train-images-idx3-ubyte.gz", folder / "train-images-idx3-ubyte.gz")
    return folder


def test_download_of_a_corrupted_file_saves_nothing(mirror_dir, tmp_path):
    mirror = corrupt_mirror(mirror_dir, tmp_path / "mirror")
    target = target_with_train_images(mirror_dir, tmp_path / "mnist")
    with serve(mirror) as (url, requests):
        with pytest.raises(InputError, match="train-labels-idx1-ubyte.gz fails its md5 check"):
            mnist.download(target, mirror=url, timeout=30)
        assert requests == ["/train-labels-idx1-ubyte.gz"]
    assert sorted(p.name for p in target.iterdir()) == ["train-images-idx3-ubyte.gz"]  # no file, no *.part
    assert md5_of(target / "train-images-idx3-ubyte.gz") == mnist.FILES["train-images-idx3-ubyte.gz"]


def test_download_cut_short_saves_nothing(mirror_dir, tmp_path):
    target = target_with_train_images(mirror_dir, tmp_path / "mnist")
    with serve(mirror_dir, TruncatingHandler) as (url, requests):
        with pytest.raises(InputError, match="train-labels-idx1-ubyte.gz"):
            mnist.download(target, mirror=url, timeout=30)
        assert requests == ["/train-labels-idx1-ubyte.gz"]
    assert sorted(p.name for p in target.iterdir()) == ["train-images-idx3-ubyte.gz"]


def test_download_of_a_missing_file_saves_nothing(mirror_dir, tmp_path):
    mirror = tmp_path / "empty-mirror"
    mirror.mkdir()
    target = target_with_train_images(mirror_dir, tmp_path / "mnist")
    with serve(mirror) as (url, _):
        with pytest.raises(InputError, match="cannot download .*train-labels-idx1-ubyte.gz.*404"):
            mnist.download(target, mirror=url, timeout=30)
    assert sorted(p.name for p in target.iterdir()) == ["train-images-idx3-ubyte.gz"]


def test_download_from_an_unreachable_port(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(InputError, match=f"cannot download {url}train-images-idx3-ubyte.gz"):
        mnist.download(tmp_path / "mnist", mirror=url, timeout=10)
    assert not (tmp_path / "mnist").exists() or list((tmp_path / "mnist").iterdir()) == []


def test_remote_hosts_are_blocked_in_tests():
    """conftest.py's guard: a download to anything but loopback fails before any packet leaves.
    (192.0.2.1 is TEST-NET-1, reserved for documentation, so even a broken guard reaches no one.)"""
    with pytest.raises((AssertionError, InputError), match="remote host"):
        mnist.download(Path("/nonexistent-target"), mirror="http://192.0.2.1/", timeout=1)


class EndlessHandler(QuietHandler):
    """Sends bytes until the client hangs up, with no Content-Length."""

    def do_GET(self):
        self.requests.append(self.path)
        self.send_response(200)
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"\0" * 65536)
        except OSError:
            pass


class GarbageStatusHandler(QuietHandler):
    """Answers with a status line that is not HTTP."""

    def handle_one_request(self):
        self.raw_requestline = self.rfile.readline(65537)
        self.requests.append("garbage")
        self.wfile.write(b"this is not HTTP\r\n\r\n")
        self.close_connection = True


def test_download_of_an_endless_body_stops_at_the_files_size(tmp_path):
    """The files' sizes are known: a server that never stops cannot fill the disk."""
    with serve(tmp_path, EndlessHandler) as (url, _):
        with pytest.raises(InputError, match=r"sent more than the 9,912,422 bytes"):
            mnist.download(tmp_path / "mnist", mirror=url, timeout=30)
    assert not (tmp_path / "mnist").exists() or list((tmp_path / "mnist").iterdir()) == []


def test_download_from_a_server_that_does_not_speak_http(tmp_path):
    with serve(tmp_path, GarbageStatusHandler) as (url, _):
        with pytest.raises(InputError, match="cannot download .*BadStatusLine"):
            mnist.download(tmp_path / "mnist", mirror=url, timeout=30)


@pytest.mark.parametrize("mirror", ["notaurl", "", "ftp://example.org/", "http://", "/some/folder"])
def test_a_mirror_that_is_not_a_url_is_refused_before_anything(capsys, tmp_path, mirror):
    from lenet_fpga.cli import main

    assert main(["download", "--data", str(tmp_path / "mnist"), "--mirror", mirror]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lenet-fpga download: error: --mirror must be an http://") and "Traceback" not in err
    assert not (tmp_path / "mnist").exists()
