"""The fast formal properties (SymbiYosys from PyPI), and proof that the checker can fail: a
false property fails with a trace, an assertion that never triggers is reported vacuous."""

import pytest
from amaranth.hdl import Assert

from hwprune.formal import Property, properties, threshold_engine as te

FAST = [p for p in properties() if p.fast]


@pytest.mark.parametrize("prop", FAST, ids=lambda p: p.id)
def test_property_holds(prop):
    outcome = prop.run(timeout=300)
    assert outcome.status == "PASS", f"{prop.id} ({prop.mode}, depth {prop.depth}):\n{outcome.log}"


def test_every_block_and_the_bridge_have_properties():
    from hwprune.contract.blocks import STREAM_BLOCKS
    covered = {p.block for p in properties()}
    missing = {b.name for b in STREAM_BLOCKS} - covered
    assert not missing and "command_bridge" in covered
    for p in properties():
        assert p.mode in ("prove", "bmc") and p.depth > 0 and p.doc


def test_a_false_property_fails():
    def never_delivers(m, dut, env):
        te.environment(m, dut, env)
        m.d.comb += Assert(~(dut.o_stream.valid & dut.o_stream.ready))
    outcome = Property("threshold_engine", "false", "", never_delivers, depth=10,
                       params=te.PARAMS).run(timeout=300)
    assert outcome.status == "FAIL", outcome.log


def test_an_assertion_that_never_triggers_is_vacuous():
    def unreachable(m, dut, env):
        te.environment(m, dut, env)
        env.reach(dut.o_stream.valid & (env.cycle == 2))    # the pipeline is 4 deep
        with m.If(dut.o_stream.valid & (env.cycle == 2)):
            m.d.comb += Assert(0)
    outcome = Property("threshold_engine", "vacuous", "", unreachable, depth=10,
                       params=te.PARAMS).run(timeout=300)
    assert outcome.status == "VACUOUS", outcome.log


def test_a_timeout_stops_the_solver_too(tmp_path):
    """A property that runs past its timeout is reported as such, and no process of its run
    (sby, smtbmc, the solver) is left behind."""
    import os
    from pathlib import Path
    slow, = properties("magnitude_histogram", open_ones=True)
    from hwprune.formal.sby import run_property
    outcome = run_property(slow.harness(), mode=slow.mode, depth=slow.depth,
                           workdir=tmp_path, timeout=8)
    assert outcome.status == "ERROR" and "timed out after 8 s" in outcome.log
    import time

    def left():
        found = []
        for pid in os.listdir("/proc"):
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, ValueError, IndexError):
                continue
            if cwd.startswith(str(tmp_path)) and state != "Z":   # a zombie is dead already
                found.append(pid)
        return found
    deadline = time.monotonic() + 5
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left(), f"processes left running in {tmp_path}: {left()}"
