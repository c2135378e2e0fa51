"""Ray checks, run by tests/test_cluster.py inside a network namespace of their own
(``unshare -n`` with only ``lo`` up), so no test traffic can leave loopback. Prints one JSON line.

- global 60 % and layer 30 % and 2:4 on a 2-worker embedded cluster, each bit-identical to one
  machine (masks, kept counts, cycles), on the verilator backend;
- a worker killed in the middle of its shard: the task runs again and the result is still exact;
- the precision sensitivity sweep with its trials on the cluster equals the sweep on one machine;
- the processes Ray started listen on loopback only (there is no other interface to listen on
  here, which is the point of the namespace; the check reads /proc/net/tcp*).
"""

import copy
import json
import os
import sys
import tempfile

import torch
from torch import nn

import hwprune
from hwprune import cluster
from hwprune.backends import VerilatorBackend


class DiesOnce(VerilatorBackend):
    """Kills its worker process at its first pass while ``marker`` exists (removing it first).

    Two workers may see the marker at once: only the one whose unlink succeeds dies."""

    def __init__(self, marker, **kw):
        super().__init__(**kw)
        self.marker = marker

    def run(self, block, jobs):
        try:
            os.unlink(self.marker)
        except FileNotFoundError:
            pass
        else:
            os._exit(17)                       # the worker dies mid-shard
        return super().run(block, jobs)


def net():
    torch.manual_seed(5)
    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 8, 3), nn.Flatten(),
                         nn.Linear(8 * 4 * 4, 40), nn.Linear(40, 10))


def outcome(model, report):
    return ([m.weight_mask.clone() for m in model.modules() if hasattr(m, "weight_mask")],
            [(l.name, l.kept, l.cycles, l.threshold, l.tie_budget) for l in report.layers],
            report.search_cycles)


def same(a, b):
    return a[1] == b[1] and a[2] == b[2] and all(torch.equal(x, y) for x, y in zip(a[0], b[0]))


def listening_off_loopback():
    bad = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(name).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr = local.split(":")[0]
            # 127.0.0.1, ::1, ::ffff:127.0.0.1, or a wildcard (in this namespace: lo only)
            if state == "0A" and addr not in ("0100007F", "00000000000000000000000001000000",
                                              "0000000000000000FFFF00000100007F",
                                              "00000000", "00000000000000000000000000000000"):
                bad.append(local)
    return bad


def main():
    results = {}
    cluster.pool(num_cpus=2)
    for width in (8, 16):
        for key, kw in {"global": dict(amount=0.6, scope="global"), "layer": dict(amount=0.3),
                        "nm": dict(pattern="2:4")}.items():
            local, remote = net(), net()
            want = outcome(local, hwprune.prune(local, backend="verilator", lanes=8, width=width,
                                                **kw))
            got = outcome(remote, hwprune.prune(remote, backend="verilator", lanes=8,
                                                width=width, cluster="ray", **kw))
            results[f"{key}_w{width}"] = same(want, got)
    # Any backend runs on the shards: the torch backend's tensor kernels as well.
    local, remote = net(), net()
    want = outcome(local, hwprune.prune(local, 0.6, scope="global", backend="torch", lanes=8))
    got = outcome(remote, hwprune.prune(remote, 0.6, scope="global", backend="torch", lanes=8,
                                        cluster="ray"))
    results["global_torch_backend"] = same(want, got)
    marker = tempfile.NamedTemporaryFile(delete=False, dir=os.getcwd(), prefix=".ray-kill-").name
    local, remote = net(), net()
    want = outcome(local, hwprune.prune(local, 0.6, scope="global", backend="verilator", lanes=8))
    got = outcome(remote, hwprune.prune(remote, 0.6, scope="global", lanes=8, cluster="ray",
                                        backend=DiesOnce(marker, lanes=8, width=8, workers=1)))
    results["worker_killed_marker_used"] = not os.path.exists(marker)
    results["worker_killed_exact"] = same(want, got)
    # The sweeps' pool: the precision trials on the cluster give the sweep of one machine.
    from hwprune.data import load_digits_splits
    from hwprune.models import build_model
    from hwprune.precision import sensitivity_sweep
    splits = load_digits_splits(0)
    mlp = build_model("mlp-digits", seed=0)
    kw = dict(widths=(4, 8), backend="verilator", lanes=8, tolerance=0.01)
    results["sensitivity_sweep"] = (sensitivity_sweep(mlp, splits.val, **kw).sweep
                                    == sensitivity_sweep(mlp, splits.val, cluster="ray",
                                                         **kw).sweep)
    results["off_loopback"] = listening_off_loopback()
    cluster.shutdown()
    print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
