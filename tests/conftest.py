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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for key, value in item.user_properties:
            if key == "seed":
                report.sections.append(("seed", f"rng seed: {value} (zlib.crc32 of {item.nodeid!r})"))
    return report
