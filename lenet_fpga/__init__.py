"""lenet-fpga: a LeNet-family network in Q2.6 fixed point, from PyTorch to a verified FPGA design.

The Python API (``lenet_fpga.api``, guide in ``docs/api.md``) is available from the top level:
``lenet_fpga.load_weights()``, ``run_golden``, ``generate_verilog``, ``simulate``,
``build_for_board``, ``connect_board``, ... Its names are imported on first use, so that
importing a subpackage (``lenet_fpga.model``) does not pull in Amaranth.
"""

from __future__ import annotations

import importlib


def _api():
    # import_module, not ``from . import api``: that asks this module's __getattr__ for "api".
    return importlib.import_module(f"{__name__}.api")


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    api = _api()
    if name in api.__all__:
        return getattr(api, name)
    raise AttributeError(f"module 'lenet_fpga' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_api().__all__))
