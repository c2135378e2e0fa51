"""The RTL mutator (tools/mutate.py) makes real, single-point, compilable mutants and puts them
where the package imports them from (the mutation run itself is a benchmark: bench/verification.py)."""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("mutate", ROOT / "tools" / "mutate.py")
mutate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutate)


@pytest.mark.parametrize("block", sorted(mutate.TARGETS))
def test_every_target_has_mutants_that_compile_and_differ(block):
    files, tests = mutate.TARGETS[block]
    assert all((ROOT / t).exists() for t in tests)
    for rel in files:
        source = (ROOT / rel).read_text()
        found = mutate.sites(source)
        assert len(found) >= 5, rel
        original = ast.dump(ast.parse(source))
        for k in (0, len(found) // 2, len(found) - 1):
            mutant = mutate.mutate(source, k)
            compile(mutant, rel, "exec")
            assert ast.dump(ast.parse(mutant)) != original, (rel, found[k])


def test_a_mutant_is_what_the_overlay_imports(tmp_path):
    pkg = mutate.overlay(tmp_path)
    rel = "hw/threshold_engine.py"
    source = (ROOT / rel).read_text()
    k = next(i for i, (_, what) in enumerate(mutate.sites(source)) if what == "~x -> x")
    mutate.overlay_path(pkg, rel).write_text(mutate.mutate(source, k))
    code = ("import inspect, hwprune.hw.threshold_engine as te; "
            "print(te.__file__); print('~self.o_stream.valid' in inspect.getsource(te))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
                         cwd=tmp_path, check=True).stdout.split()
    assert out[0] == str(pkg / "hw" / "threshold_engine.py")
    assert out[1] == "False"     # the first ~ of elaborate is gone in the imported module
