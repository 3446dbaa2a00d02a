"""The project's structure, checked: imports go one way (model < hdl < boards < sim < explore <
the command line and the Python API), the model core never imports PyTorch, Amaranth or the
training package, and no function outside the tests is longer than 100 lines.

Every import counts, also one inside a function: a lazy import is fine for start-up speed, but
it must not hide an arrow that goes up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The folders in the order they may import each other; the installed package maps each to
# lenet_fpga.<folder> (pyproject.toml), and lenet_fpga/ itself (CLI, API) is on top.
LAYERS = ("model", "hdl", "boards", "sim", "explore", "lenet_fpga")
MAX_FUNCTION_LINES = 100


def modules():
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            yield layer, path


def package_of(layer: str, path: Path) -> list[str]:
    """The dotted package of ``path`` as installed: ``model/train/qat.py`` -> lenet_fpga.model.train."""
    parts = list(path.relative_to(ROOT / layer).parent.parts)
    return ["lenet_fpga"] + ([] if layer == "lenet_fpga" else [layer]) + parts


def imported(layer: str, path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """Every module ``path`` imports (absolute dotted names), with its line (``text``: as if
    the file held that)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text, str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_of(layer, path)[: len(package_of(layer, path)) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            # ``from .. import hdl`` imports the package hdl: count each name as a module too.
            found.append((node.lineno, name))
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return found


def layer_of(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "lenet_fpga":
        return None
    if len(parts) > 1 and parts[1] in LAYERS[:-1]:
        return parts[1]
    return "lenet_fpga" if len(parts) > 1 and parts[1] not in ("__init__",) else None


def test_imports_go_one_way():
    upward = []
    for layer, path in modules():
        for line, name in imported(layer, path):
            target = layer_of(name)
            if target is not None and LAYERS.index(target) > LAYERS.index(layer):
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {name} ({layer} < {target})")
    assert not upward, "imports that go up:\n" + "\n".join(upward)


def test_the_model_core_imports_neither_torch_nor_amaranth_nor_training():
    found = []
    for layer, path in modules():
        if layer != "model" or "train" in path.relative_to(ROOT / "model").parts:
            continue
        for line, name in imported(layer, path):
            if name.split(".")[0] in ("torch", "amaranth") or name.startswith("lenet_fpga.model.train"):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not found, "\n".join(found)


def test_no_function_is_longer_than_100_lines():
    long = []
    for layer, path in modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "\n".join(long)


@pytest.mark.parametrize("source, statement, name", [
    # The checker itself: relative imports from a subpackage and from a package, and an upward one.
    ("model/train/qat.py", "from .. import arith", "lenet_fpga.model.arith"),
    ("model/train/qat.py", "from . import compress", "lenet_fpga.model.train.compress"),
    ("hdl/lenet.py", "from ..boards import protocol", "lenet_fpga.boards.protocol"),
    ("lenet_fpga/cli.py", "from .hdl import designs", "lenet_fpga.hdl.designs"),
])
def test_the_checker_resolves_relative_imports(source, statement, name):
    layer, relative = source.split("/", 1)
    assert name in [n for _, n in imported(layer, ROOT / layer / relative, statement)]


def test_the_checker_sees_an_upward_import():
    assert layer_of("lenet_fpga.boards.protocol") == "boards"
    assert layer_of("lenet_fpga.api") == "lenet_fpga" and layer_of("numpy") is None
    [(_, name), *_] = imported("hdl", ROOT / "hdl" / "lenet.py", "def f():\n    from ..sim import runner\n")
    assert LAYERS.index(layer_of(name)) > LAYERS.index("hdl")
