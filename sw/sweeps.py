"""Embarrassingly parallel sweeps on one pool: placement seeds, precision trials, experiment seeds.

:func:`parallel_map` runs a picklable function over items on a Ray cluster (``cluster="ray"``,
:mod:`hwprune.cluster`: embedded on this machine, or the cluster at ``address``), on local
threads (``cluster="threads"``: for work that runs in subprocesses or releases the GIL, such as
synthesis), or one after another (``cluster=None``). The results come back in order and do not
depend on where they ran.

:func:`synth_seeds` is ``hwprune synth --seeds N``: nextpnr placement seeds side by side, each in
a build folder of its own, the best Fmax kept (its bitstream and report copied to the board's
usual folder).
"""

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["CLUSTERS", "parallel_map", "synth_seeds"]

CLUSTERS = (None, "threads", "ray")


def parallel_map(fn, items, *, cluster=None, address=None, workers=None):
    """``[fn(item) for item in items]``, run where ``cluster`` says (see the module doc)."""
    if cluster not in CLUSTERS:
        raise ValueError(f"cluster must be one of {CLUSTERS}, not {cluster!r}")
    if address is not None and cluster != "ray":
        raise ValueError("address is the Ray cluster to join: it needs cluster='ray'")
    items = list(items)
    if cluster == "ray":
        from .cluster import pool
        return pool(address).map(fn, items)
    if cluster == "threads" and len(items) > 1:
        workers = workers or len(os.sched_getaffinity(0))
        with ThreadPoolExecutor(max_workers=min(workers, len(items))) as ex:
            return list(ex.map(fn, items))
    return [fn(item) for item in items]


def _synth_one(task):
    from .hw.boards import synth
    seed, kw = task
    report = synth(seed=seed, **kw)
    report["seed"] = seed
    report["bitstream_bytes"] = Path(report["bitstream"]).read_bytes()
    return report


def synth_seeds(board, *, seeds, lanes, width, build_dir="build", cluster="threads",
                address=None, **options):
    """Synthesize with placement seeds ``1..seeds`` (each under ``<build_dir>/seeds/seed<i>``)
    and keep the best core Fmax: its bitstream and ``report.json`` (with every seed's Fmax
    under ``"seeds"``) go to ``<build_dir>/<board>_l<lanes>_w<width>_best/``. Returns that
    report. The bitstream travels back with the result, so remote workers need no shared disk.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, not {seeds!r}")
    if lanes is None:                       # the board's default bitstream's lanes
        from .hw.boards import DEFAULT_LANES
        lanes = DEFAULT_LANES[board]
    root = Path(build_dir).resolve()
    tasks = [(s, dict(board=board, lanes=lanes, width=width,
                      build_dir=str(root / "seeds" / f"seed{s}"), **options))
             for s in range(1, seeds + 1)]
    reports = parallel_map(_synth_one, tasks, cluster=cluster, address=address)
    best = max(reports, key=lambda r: (r["core_fmax_mhz"] or 0.0, -r["seed"]))
    out = root / f"{board}_l{lanes}_w{width}_best"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    bitstream = out / Path(best["bitstream"]).name
    bitstream.write_bytes(best.pop("bitstream_bytes"))
    best["bitstream"] = str(bitstream)
    best["seeds"] = {r["seed"]: r["core_fmax_mhz"] for r in reports}
    for r in reports:
        r.pop("bitstream_bytes", None)
    (out / "report.json").write_text(json.dumps(best, indent=2))
    return best
