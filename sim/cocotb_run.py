"""Build and run cocotb 2.x test benches on Verilator through ``cocotb_tools.runner``.

Builds are cached like the shared libraries (by a hash of the Verilog and the build options), so
the tests and the cocotb backend share one simulator binary per parameter set.
"""

import json
import os
import subprocess
import warnings
from pathlib import Path

from filelock import FileLock

from .build import (VERILATOR_WARNINGS, BuildError, _digest, _file_digest, cache_dir,
                    setup_verilator, verilog_file)

__all__ = ["cocotb_build", "cocotb_test", "simulator_dir"]


def simulator_dir(block, vfile):
    """The cache folder of the cocotb simulator of ``block`` built from Verilog ``vfile``."""
    import cocotb
    return cache_dir() / "cocotb" / (
        f"{block}-" + _digest(Path(vfile).read_bytes(), *VERILATOR_WARNINGS, cocotb.__version__,
                              Path(cocotb.__file__).resolve().parent,
                              setup_verilator().parent.parent.name))


def cocotb_build(block, **params):
    """Build (once) the cocotb simulator of ``block``; return its build folder."""
    from cocotb_tools.runner import get_runner

    setup_verilator()
    vfile = verilog_file(block, **params)
    # Keyed by the Verilog itself: an edit elsewhere in hw/ that leaves this block's Verilog
    # unchanged reuses the simulator. And by where cocotb is installed: the simulator loads
    # cocotb's VPI library from that environment by path, so a build made from another
    # (since deleted) virtual environment does not run here.
    build_dir = simulator_dir(block, vfile)
    with FileLock(str(build_dir) + ".lock"):
        done = build_dir / ".built"       # the simulator's checksum, written when it is complete
        binary = build_dir / block
        if done.exists():
            recorded = done.read_text().strip()
            if binary.exists() and recorded == _file_digest(binary):
                return build_dir
            if recorded:    # (an empty stamp is an older cache's: rebuilt without a warning)
                warnings.warn(f"cached cocotb simulator {build_dir} is damaged (checksum "
                              f"mismatch); rebuilding", RuntimeWarning, stacklevel=2)
            done.unlink()
        runner = get_runner("verilator")
        try:
            runner.build(sources=[vfile], hdl_toplevel=block, build_dir=build_dir,
                         build_args=[*VERILATOR_WARNINGS, "-O3", "--x-assign", "fast",
                                     "--x-initial", "fast"], always=True)
        except (subprocess.CalledProcessError, SystemExit) as exc:
            raise BuildError(f"cocotb Verilator build of {block} {params} failed: {exc}") \
                from exc
        done.write_text(_file_digest(binary))
    return build_dir


def cocotb_test(block, test_module, *, testcase=None, extra_env=None, test_dir=None, **params):
    """Run cocotb tests of ``test_module`` against ``block``; return (tests, failed).

    Raises :class:`RuntimeError` when the simulator fails to run or reports no result.
    """
    from cocotb_tools.runner import get_results, get_runner

    build_dir = cocotb_build(block, **params)
    runner = get_runner("verilator")
    test_dir = Path(test_dir or build_dir / "run")
    test_dir.mkdir(parents=True, exist_ok=True)
    results = test_dir / f"results-{os.getpid()}.xml"
    env = {"PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", ""), "HWPRUNE_BLOCK": block,
           "HWPRUNE_BLOCK_PARAMS": json.dumps(params)}
    env.update(extra_env or {})
    try:
        runner.test(test_module=test_module, hdl_toplevel=block, hdl_toplevel_lang="verilog",
                    testcase=testcase,
                    build_dir=build_dir, test_dir=test_dir, results_xml=str(results),
                    extra_env=env)
    except SystemExit as exc:
        # Under pytest the runner exits on failed cocotb tests; report it the same way.
        if not results.exists():
            raise RuntimeError(f"cocotb simulation of {block} failed (exit {exc.code})") from exc
    try:
        return get_results(results)
    finally:
        results.unlink(missing_ok=True)
