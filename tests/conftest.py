import os
import zlib

import numpy as np
import pytest

# Deprecated Amaranth/cocotb idioms fail the tests instead of hiding in the log.
os.environ.setdefault("PYTHONWARNINGS", "error::DeprecationWarning")


def _seed(name):
    """A seed from the test's name that is the same in every process (``hash()`` of a string
    is salted per process, so it would not reproduce)."""
    return zlib.crc32(name.encode())


@pytest.fixture
def rng(request):
    seed = _seed(request.node.nodeid)
    request.node.user_properties.append(("seed", seed))
    return np.random.default_rng(seed)


@pytest.fixture
def simulators_agree():
    """``check(block, jobs, same, build=None, **params)``: run ``jobs`` on the golden,
    verilator, torch and cocotb backends (the block built with ``build``'s parameters where
    given) and call ``same(want, got)`` on each result against the golden one."""
    from hwprune import get_backend

    def backend(name, block, build, params):
        be = get_backend(name, **params)
        return be.configure(block, **build) if build else be

    def check(block, jobs, same, build=None, **params):
        want = backend("golden", block, build, params).run(block, jobs)
        for name in ("verilator", "torch", "cocotb"):
            got = backend(name, block, build, params).run(block, jobs)
            assert len(got) == len(want), name
            for w, g in zip(want, got):
                same(w, g)

    return check


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for key, value in item.user_properties:
            if key == "seed":
                report.sections.append(("seed", f"rng seed: {value} (zlib.crc32 of {item.nodeid!r})"))
    return report
