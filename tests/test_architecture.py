"""The layering and the block descriptions: every module imports alone, the contract layer
imports neither Amaranth nor torch, every registry comes from the list of blocks, and every
block's parameter domain is enforced the same way by the RTL, the golden path and every backend."""

import gc
import json
import os
from concurrent.futures import ThreadPoolExecutor
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

import hwprune
from hwprune import contract
from hwprune.backends import BACKENDS
from hwprune.contract.blocks import BLOCKS, STREAM_BLOCKS
from hwprune.contract.layout import Field, Layout

ROOT = Path(__file__).resolve().parent.parent
# Components built only to read their signatures are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def _modules():
    """Every module of the package, from the folders pyproject.toml maps to packages."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = config["package-dir"]
    names = []
    for package in config["packages"]:
        parent = max((p for p in dirs if package == p or package.startswith(p + ".")), key=len)
        folder = ROOT / dirs[parent] / Path(*package[len(parent):].split(".")[1:])
        names.append(package)
        names += [f"{package}.{f.stem}" for f in folder.glob("*.py") if f.stem != "__init__"]
    return sorted(set(names))


def test_every_module_imports_alone_in_a_fresh_interpreter():
    modules = [m for m in _modules() if not m.endswith("__main__")]
    assert {"hwprune.contract", "hwprune.hw", "hwprune.sim", "hwprune.sim.cocotb_tb"} <= set(modules)
    # One interpreter per module: no module may rely on another having been imported first.
    script = "import importlib, sys\nimportlib.import_module(sys.argv[1])\n"

    def load(name):
        proc = subprocess.run([sys.executable, "-c", script, name], capture_output=True,
                              text=True, cwd=ROOT)
        return name, proc.returncode, proc.stderr.strip().splitlines()[-1:]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        failures = {name: err for name, rc, err in pool.map(load, modules) if rc}
    assert not failures, failures


def test_contract_layer_imports_neither_amaranth_nor_torch():
    code = ("import json, sys, hwprune.contract, hwprune.contract.protocol; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('amaranth', 'torch', 'cocotb'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == []


def test_import_hwprune_is_light_and_its_names_resolve():
    out = subprocess.run([sys.executable, "-c", "import sys, hwprune; "
                          "print(*(m in sys.modules for m in ('amaranth', 'cocotb', 'torch'))); "
                          "from hwprune import prune, run, get_backend, BuildError; "
                          "import hwprune.pruning; print(callable(hwprune.prune), "
                          "hwprune.prune is prune)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False", "True", "True"]


def test_registries_are_derived_from_the_block_list():
    from hwprune.hw import BLOCKS as RTL
    from hwprune.sim.verilator_lib import LIBRARIES
    names = [b.name for b in BLOCKS]
    assert list(RTL) == names
    assert list(LIBRARIES) == list(contract.MODELS) == [b.name for b in STREAM_BLOCKS]
    for b in STREAM_BLOCKS:
        assert contract.MODELS[b.name] is b.golden and contract.RESULTS[b.name] is b.result
        assert RTL[b.name] is b.resolve("component")


def _edges(desc):
    """Parameter sets at and just past the edges of ``desc``'s domain, with the verdict."""
    base = {"lanes": 16, "width": 8}
    for p in desc.domain.params:
        if p.name not in base and p.default is None and p.default_from is None:
            base[p.name] = p.values()[0]
    for p in desc.domain.params:
        if p.name not in ("lanes", "width"):
            continue
        ok = p.values()
        candidates = {ok[0], ok[-1], ok[0] - 1, ok[-1] + 1, ok[0] + 1}
        for v in sorted(candidates):
            params = dict(base, **{p.name: v})
            yield params, desc.domain.accepts(**params)


@pytest.mark.parametrize("desc", STREAM_BLOCKS, ids=lambda b: b.name)
def test_one_domain_everywhere(desc):
    """At the edges of each block's domain, the golden and verilator backends (and the cocotb
    backend's check, which runs before any build) accept and reject exactly what the RTL does,
    with the domain's message."""
    from hwprune.hw import component
    for params, accepted in _edges(desc):
        lanes, width = params["lanes"], params["width"]
        try:
            component(desc.name, **params)
            rtl = None
        except ValueError as exc:
            rtl = str(exc)
        assert (rtl is None) == accepted, (params, rtl)
        for name, cls in BACKENDS.items():
            if name in ("uart-sim", "serial"):
                # Their constructors open a (simulated) line; the check runs before any use.
                backend = object.__new__(cls)
                backend.lanes, backend.width = lanes, width
            else:
                backend = cls(lanes=lanes, width=width)
            try:
                backend.params(desc.name)
                got = None
            except ValueError as exc:
                got = str(exc)
            assert got == rtl, (name, params)


TILE_LANES = r"lanes must be an integer from 4 to 64"
WIDTHS = r"width must be one of \(4, 8, 16\)"
NM_LANES = r"lanes must be a multiple of 8 from 8 to 64"


@pytest.mark.parametrize("name,lanes,width,rule", [
    *[(name, lanes, width, rule) for name in ("threshold_engine", "channel_norms")
      for lanes, width, rule in [(3, 8, TILE_LANES), (65, 8, TILE_LANES), ("8", 8, TILE_LANES),
                                 (True, 8, TILE_LANES), (8, 7, WIDTHS), (8, 32, WIDTHS)]],
    *[("nm_selector", lanes, width, rule)
      for lanes, width, rule in [(4, 8, NM_LANES), (12, 8, NM_LANES), (72, 8, NM_LANES),
                                 ("8", 8, NM_LANES), (True, 8, NM_LANES), (8, 7, WIDTHS)]],
])
def test_the_rtl_rejects_bad_parameters_with_the_domain_message(name, lanes, width, rule):
    """The rules written here, independently of the domains: the component refuses to build."""
    from hwprune.hw import component
    with pytest.raises(ValueError, match=rf"^{rule} for {name}, not .+$"):
        component(name, lanes=lanes, width=width)


def test_nm_pattern_at_4_lanes_is_rejected_on_every_backend_alike():
    model = __import__("torch").nn.Linear(8, 4)
    messages = set()
    for name in ("golden", "verilator"):
        with pytest.raises(ValueError) as exc:
            hwprune.prune(model, pattern="2:4", backend=name, lanes=4, width=8)
        messages.add(str(exc.value))
    assert messages == {"lanes must be a multiple of 8 from 8 to 64 for nm_selector, not 4"}


def test_layouts_agree_with_the_rtl_ports():
    from hwprune.hw.layouts import amaranth_layout
    for desc in STREAM_BLOCKS:
        params = desc.check(lanes=16, width=8)
        component = desc.resolve("component")(**params)
        sig = component.signature.members
        for name, layout in desc.layouts(**params).items():
            shape = sig[name].signature.members["payload"].shape
            assert shape.size == layout.size, (desc.name, name)
            assert shape == amaranth_layout(layout)
            for f in layout.fields:
                assert shape._fields[f.name].offset == layout.offsets[f.name], (desc.name, f)
    del component
    gc.collect()   # its UnusedElaboratable warning is raised here, under this module's filter


def _reference_pack(layout, values, beats):
    """Bit by bit, in Python integers: the definition :meth:`Layout.pack` must match."""
    out = []
    for b in range(beats):
        word = 0
        for f in layout.fields:
            v = np.asarray(values.get(f.name, np.zeros((beats, f.count)))).reshape(beats, -1)
            for i in range(f.count):
                word |= (int(v[b, i]) & ((1 << f.width) - 1)) << (layout.offsets[f.name] + i * f.width)
        out.append(word)
    return out


@pytest.mark.parametrize("fields", [
    [Field("data", 8, 16, signed=True), Field("lane_valid", 1, 16)],
    [Field("data", 4, 7, signed=True), Field("mask", 1, 7), Field("last", 1)],
    [Field("value", 28, 4, signed=True), Field("valid", 1, 4)],
    [Field("l1", 40), Field("l2", 55)],
    [Field("flag", 1), Field("huge", 70, 2, signed=True), Field("tail", 3)],
    [Field("value", 16, 5, signed=True), Field("index", 8, 5), Field("count", 3),
     Field("end", 1, 5), Field("final", 1)],
], ids=["tile", "odd-width", "results", "wide", "weight-beat", "wider-than-56"])
def test_layout_pack_unpack_match_the_bit_definition(fields, rng):
    layout = Layout("t", fields)
    beats = 37
    values = {}
    for f in fields:
        if f.signed:
            lo, hi = -(1 << min(f.width - 1, 62)), 1 << min(f.width - 1, 62)
        else:
            lo, hi = 0, 1 << min(f.width, 62)
        v = rng.integers(lo, hi, size=(beats, f.count), dtype=np.int64)
        v[0] = lo  # corners: the most negative value, zero and the largest on the first beats
        v[1] = 0
        v[2] = hi - 1
        values[f.name] = v
    assert layout.to_ints(values, beats) == _reference_pack(layout, values, beats)
    back = layout.unpack(layout.pack(values, beats))
    for f in fields:
        np.testing.assert_array_equal(back[f.name].astype(np.int64), values[f.name], f.name)
    with pytest.raises(ValueError, match="has no field"):
        layout.pack({"nope": np.zeros(beats)}, beats)


#: The layout change under test, made in the contract alone: the lane bitmap first, then the
#: weights. It goes into a sitecustomize module, so that every Python process of the run (this
#: one and the cocotb simulator's embedded interpreter) sees the changed contract.
_PATCH = r'''
from hwprune.contract import threshold_engine as te
from hwprune.contract.layout import Field, Layout


def tile_layout(*, lanes, width):
    return Layout("tile", [Field("lane_valid", 1, lanes), Field("data", width, lanes, signed=True)])


te.tile_layout = tile_layout
object.__setattr__(te.BLOCK, "streams", (type(te.BLOCK.streams[0])("i_stream", tile_layout),
                                           te.BLOCK.streams[1]))
'''

_SWAPPED = r'''
import json, sys
import numpy as np
from hwprune.contract import threshold_engine as te
from hwprune.backends import get_backend
from hwprune.hw.threshold_engine import TileLayout
from hwprune.sim.stimulus import random_tiles
rng = np.random.default_rng(7)
tiles, valid = random_tiles(rng, 50, 8, 8)
job = te.ThresholdJob(tiles, valid, 20, 5)
out = {"rtl_lane_valid_offset": TileLayout(8, 8)._fields["lane_valid"].offset}
want = te.run(job)
for name in sys.argv[1:]:
    got = get_backend(name, lanes=8, width=8).run("threshold_engine", [job])[0]
    out[name] = bool(np.array_equal(got.data, want.data) and np.array_equal(got.mask, want.mask)
                     and got.kept == want.kept and got.cycles == want.cycles)
print(json.dumps(out))
'''


def test_a_layout_change_reaches_every_backend(tmp_path):
    """Swap two fields of the threshold engine's input layout in the contract alone: the RTL,
    the generated shim header and the cocotb bench all follow, and the results stay exact."""
    (tmp_path / "sitecustomize.py").write_text(_PATCH)
    env = dict(os.environ, HWPRUNE_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", _SWAPPED, "verilator", "cocotb"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"rtl_lane_valid_offset": 0, "verilator": True, "cocotb": True}


def test_info_lists_every_block_with_its_domain(capsys):
    from hwprune.cli import main
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in data["blocks"]] == [b.name for b in BLOCKS]
    for entry, desc in zip(data["blocks"], BLOCKS):
        assert entry["domain"] == desc.domain.to_json()
    assert "path" in data["cache"] and data["cache"]["bytes"] >= 0
    assert main(["info"]) == 0
    assert "sparse_mac" in capsys.readouterr().out


def test_verilog_of_every_block_from_the_cli(tmp_path):
    from hwprune.cli import main
    for desc in BLOCKS:
        assert main(["verilog", "--block", desc.name, "--lanes", "8", "--width", "8",
                     "--out", str(tmp_path)]) == 0
        text = (tmp_path / f"{desc.name}_l8_w8.v").read_text()
        assert f"module {desc.name}" in text
    assert main(["verilog", "--block", "nope", "--out", str(tmp_path)]) == 2
