import os

import numpy as np
import pytest

# Deprecated Amaranth/cocotb idioms fail the tests instead of hiding in the log.
os.environ.setdefault("PYTHONWARNINGS", "error::DeprecationWarning")


@pytest.fixture
def rng(request):
    return np.random.default_rng(abs(hash(request.node.name)) % 2**32)
