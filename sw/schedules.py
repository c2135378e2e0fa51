"""Gradual pruning: Zhu & Gupta's cubic sparsity schedule and a pruner that follows it.

Zhu & Gupta ("To prune, or not to prune", 2017) raise the sparsity from ``s_i`` to ``s_f`` over
``n`` pruning steps taken every ``Δt`` training steps from step ``t_0``:

    s_t = s_f + (s_i - s_f) · (1 - (t - t_0) / (n·Δt))^3,   t ∈ {t_0, t_0 + Δt, ..., t_0 + n·Δt}

so the sparsity rises fast while there are many redundant weights and slowly near the end.
:class:`GradualPruner` recomputes every mask at each of those steps through the hardware engine
(:func:`hwprune.prune`): the threshold moves with the weights as training goes on, which is the
reference article's "dynamic threshold".
"""

import math

from .backends import Backend, get_backend
from .pruning import prune

__all__ = ["CubicSchedule", "GradualPruner"]


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")


def _check_sparsity(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a sparsity from 0 (inclusive) to 1 (exclusive), "
                         f"not {value!r}")


class CubicSchedule:
    """Zhu & Gupta's polynomial (by default cubic) sparsity schedule.

    Parameters
    ----------
    initial_sparsity, final_sparsity : float
        ``s_i`` and ``s_f``, with ``0 <= s_i <= s_f < 1`` (a sparsity of 1 would keep no weight).
    begin_step : int
        ``t_0``, the first pruning step (>= 0).
    num_steps : int
        ``n``, the number of pruning steps after the first (>= 1): masks are computed ``n + 1``
        times, at ``s_i`` and last at ``s_f``.
    frequency : int
        ``Δt``, training steps between pruning steps (>= 1).
    power : int
        The exponent; 3 is Zhu & Gupta's.
    """

    def __init__(self, *, initial_sparsity=0.0, final_sparsity, begin_step=0, num_steps,
                 frequency, power=3):
        _check_sparsity("initial_sparsity", initial_sparsity)
        _check_sparsity("final_sparsity", final_sparsity)
        if initial_sparsity > final_sparsity:
            raise ValueError(f"initial_sparsity must not exceed final_sparsity, "
                             f"not {initial_sparsity!r} > {final_sparsity!r}")
        _check_int("begin_step", begin_step, 0)
        _check_int("num_steps", num_steps, 1)
        _check_int("frequency", frequency, 1)
        _check_int("power", power, 1)
        self.initial_sparsity, self.final_sparsity = float(initial_sparsity), float(final_sparsity)
        self.begin_step, self.num_steps, self.frequency = begin_step, num_steps, frequency
        self.power = power

    @property
    def end_step(self):
        """``t_0 + n·Δt``, the last pruning step."""
        return self.begin_step + self.num_steps * self.frequency

    def __call__(self, step):
        """The target sparsity at training step ``step``: ``s_i`` before ``t_0``, ``s_f`` after
        the last pruning step, and between them the cubic curve (held from one pruning step to
        the next)."""
        _check_int("step", step, 0)
        if step < self.begin_step:
            return self.initial_sparsity
        done = min((step - self.begin_step) // self.frequency, self.num_steps)
        progress = done / self.num_steps
        s_i, s_f = self.initial_sparsity, self.final_sparsity
        return s_f + (s_i - s_f) * (1.0 - progress) ** self.power

    def is_pruning_step(self, step):
        """Whether masks are recomputed at training step ``step``."""
        return self.begin_step <= step <= self.end_step and \
            (step - self.begin_step) % self.frequency == 0

    def pruning_steps(self):
        """The ``n + 1`` training steps at which masks are recomputed."""
        return list(range(self.begin_step, self.end_step + 1, self.frequency))

    def __repr__(self):
        return (f"CubicSchedule(initial_sparsity={self.initial_sparsity}, "
                f"final_sparsity={self.final_sparsity}, begin_step={self.begin_step}, "
                f"num_steps={self.num_steps}, frequency={self.frequency}, power={self.power})")


class GradualPruner:
    """Recompute ``model``'s masks through the engine at every pruning step of a schedule.

    Use it as ``on_step`` of :func:`hwprune.train.train`, or call :meth:`step` from any loop.
    Each pruning step calls :func:`hwprune.prune` with the schedule's sparsity; masks only ever
    shrink (the new mask is ANDed with the old one, and already-pruned weights are zeros, ranked
    last), and every tensor ends at exactly ``final_sparsity``.

    Parameters
    ----------
    model : torch.nn.Module
    schedule : CubicSchedule
    backend : str or Backend
        The engine (``"verilator"`` by default); a name is built once and reused.
    lanes, width : int
        Engine parameters (width 16 ranks weights at the finest step).
    **prune_options
        Passed to :func:`hwprune.prune` (``layers``, ``granularity``, ...).
    """

    def __init__(self, model, schedule, *, backend="verilator", lanes=16, width=16,
                 **prune_options):
        if not isinstance(schedule, CubicSchedule):
            raise TypeError(f"schedule must be a CubicSchedule, not {type(schedule).__name__}")
        pattern = str(prune_options.get("pattern", "unstructured")).strip().lower()
        if pattern != "unstructured":
            # N:M has one sparsity by definition, and channel pruning reshapes the model under
            # the optimizer: both are pruned once (hwprune.prune) and then fine-tuned.
            raise ValueError(f"GradualPruner schedules unstructured sparsity, not pattern "
                             f"{pattern!r}; prune N:M or channels once and fine-tune")
        self.model, self.schedule = model, schedule
        self.engine = backend if isinstance(backend, Backend) else \
            get_backend(backend, lanes=lanes, width=width)
        self.lanes, self.width = self.engine.lanes, self.engine.width
        self.prune_options = prune_options
        self.history = []   # (step, sparsity, PruneReport) of every pruning step

    def step(self, step):
        """Prune at ``step`` if it is a pruning step; return True when the masks changed."""
        if not self.schedule.is_pruning_step(step):
            return False
        sparsity = self.schedule(step)
        if self.history and sparsity == self.history[-1][1]:
            return False
        report = prune(self.model, amount=sparsity, backend=self.engine, lanes=self.lanes,
                       width=self.width, **self.prune_options)
        self.history.append((step, sparsity, report))
        return True

    __call__ = step

    @property
    def report(self):
        """The last pruning step's :class:`hwprune.PruneReport` (None before the first)."""
        return self.history[-1][2] if self.history else None
