"""A Ray cluster when one machine is not enough (``pip install hwprune[ray]``).

:func:`pool` starts Ray embedded on this machine (``address=None``) or joins an existing cluster
(``address="ray://..."`` or ``"host:port"``); :meth:`Pool.map` runs a picklable function over
items on its workers and retries a task whose worker died (``max_retries``), so a killed worker
costs time, never a result. :func:`hwprune.prune` with ``cluster="ray"`` uses it to send shards
of a model (whole tensors, balanced by size) to the workers, each running the chosen backend;
``hwprune synth --seeds N`` and the experiments' seeds run on the same pool.

Global exact-k across shards: every shard counts the histogram of its tensors (the torch
backend's additive histogram kernel, bit-identical to the histogram unit's counts; the unit's
own bins are consumed by its select walk and cannot be read out), the driver sums them and
walks the sum once (the unit's select walk), and from each tensor's own count at the threshold
it knows every tensor's share of the tie budget in model order before any mask is made. The
masking passes then run on every shard at once, on the chosen backend (the RTL for
``verilator``), and the kept counts are checked: the result is bit-identical to one machine.

The embedded cluster keeps to this machine as far as Ray allows: it is started with
``_node_ip_address="127.0.0.1"``, no dashboard, and Ray's token authentication on
(``RAY_AUTH_MODE=token``, a token generated under ``~/.ray``). Ray 2.60's gRPC servers still
listen on every interface (their ports are random); the README lists the ports a real cluster
opens. hwprune's own tests run Ray in a network namespace of their own.
"""

import os
import sys

__all__ = ["Pool", "pool", "shutdown", "shards"]

_POOLS = {}


class Pool:
    """Ray workers that run functions over items (:meth:`map`)."""

    def __init__(self, ray, address):
        self._ray, self.address = ray, address
        self._remote = {}

    @property
    def workers(self):
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def map(self, fn, items, *, max_retries=3):
        """``[fn(item) for item in items]`` on the cluster's workers, in order. A task whose
        worker dies is run again (up to ``max_retries`` times); an exception raised by ``fn``
        comes back as itself."""
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(max_retries=max_retries)(fn)
        refs = [remote.remote(item) for item in items]
        try:
            return self._ray.get(refs)
        except self._ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            raise (cause.cause if getattr(cause, "cause", None) is not None else cause) from None


def pool(address=None, *, num_cpus=None):
    """The Ray pool: embedded on this machine (``address=None``), or the cluster at
    ``address``. Started once per process and reused."""
    # Token authentication on. Ray reads the mode when it is first imported: a Ray imported
    # earlier without it would start servers that demand a token it never sends.
    if "RAY_AUTH_MODE" not in os.environ and "ray" in sys.modules:
        raise RuntimeError("Ray was imported before hwprune could turn its token authentication "
                           "on: set RAY_AUTH_MODE=token in the environment (or call "
                           "hwprune.cluster.pool() before importing ray)")
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        import ray
    except ImportError:
        raise ImportError("cluster='ray' needs Ray: pip install 'hwprune[ray]'") from None
    key = address or "embedded"
    if key in _POOLS and ray.is_initialized():
        return _POOLS[key]
    if ray.is_initialized():
        ray.shutdown()
        _POOLS.clear()
    common = dict(include_dashboard=False, log_to_driver=False, configure_logging=False,
                  ignore_reinit_error=False)
    if address is None:
        ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", **common)
    else:
        ray.init(address=address, **common)
    _POOLS[key] = Pool(ray, address)
    return _POOLS[key]


def shutdown():
    """Stop (or leave) the cluster this process started or joined."""
    import ray
    _POOLS.clear()
    if ray.is_initialized():
        ray.shutdown()


def shards(sizes, count):
    """Indices of ``sizes`` split into ``count`` groups of about equal total size (largest
    first onto the least loaded group), each group in its original order."""
    groups = [[] for _ in range(max(1, min(count, len(sizes))))]
    loads = [0] * len(groups)
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        g = loads.index(min(loads))
        groups[g].append(i)
        loads[g] += sizes[i]
    return [sorted(g) for g in groups if g]
