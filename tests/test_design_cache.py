"""Harness Verilog kept between commands (sim/design_cache.py): found again for the same design,
made again for anything that changes it (weights, configuration, the generator's source)."""

import lenet_fpga as lf
from lenet_fpga.hdl.designs import GeneratorOptions
from lenet_fpga.model.weights import WeightSet
from lenet_fpga.sim import design_cache, network


def counting(monkeypatch):
    made = []
    real = network.harness_verilog

    def harness_verilog(*args, **kwargs):
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(network, "harness_verilog", harness_verilog)
    return made


def test_the_same_design_is_made_once(tmp_path, monkeypatch):
    made = counting(monkeypatch)
    ws = lf.load_weights()
    config = lf.design_config(ws)
    first = network.harness_design(ws, config, cache_root=tmp_path)
    second = network.harness_design(ws, config, cache_root=tmp_path)
    assert made == [1] and first == second
    assert first == network.harness_design(ws, config)  # no cache: made again, the same
    assert len(list((tmp_path / design_cache.FOLDER).iterdir())) == 1


def test_what_changes_the_design_changes_the_key(monkeypatch):
    ws = lf.load_weights()
    config = lf.design_config(ws)
    keys = {design_cache.key(ws, config, False)}
    params = {name: array.copy() for name, array in ws.params.items()}
    params["fc3.bias"][0] ^= 1
    keys.add(design_cache.key(WeightSet(params, ws.manifest, ws.path), config, False))
    keys.add(design_cache.key(WeightSet(ws.params, {**ws.manifest, "overflow": "wrap"}, ws.path), config, False))
    keys.add(design_cache.key(ws, lf.design_config(ws, GeneratorOptions(preset="fast")), False))
    keys.add(design_cache.key(ws, config, True))
    monkeypatch.setattr(design_cache, "_source_digest", lambda: "an edited generator")
    keys.add(design_cache.key(ws, config, False))
    assert len(keys) == 6


def test_a_damaged_entry_is_made_again(tmp_path, monkeypatch):
    ws = lf.load_weights()
    config = lf.design_config(ws)
    design = network.harness_design(ws, config, cache_root=tmp_path)
    [entry] = (tmp_path / design_cache.FOLDER).iterdir()
    entry.write_text('{"verilog": ')
    made = counting(monkeypatch)
    assert network.harness_design(ws, config, cache_root=tmp_path) == design and made == [1]
    assert design_cache.load(tmp_path, entry.stem)["verilog"] == design.verilog  # and kept again, whole
