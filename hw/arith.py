"""Small arithmetic building blocks shared by the hardware blocks."""

from amaranth import Mux, Signal, Value

__all__ = ["tree_sum", "popcount", "kogge_stone_levels", "segmented_scan"]


def tree_sum(values):
    """Sum of ``values`` as a balanced adder tree (depth log2 of their number)."""
    terms = list(values)
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


def popcount(value):
    """Number of set bits of ``value``, as a balanced adder tree."""
    value = Value.cast(value)
    return tree_sum(value[i].as_unsigned() for i in range(len(value)))


def kogge_stone_levels(m, level, step, count, shape):
    """Inclusive prefix sums, a Kogge-Stone network that can be split between pipeline stages.

    Runs ``count`` more Kogge-Stone levels (starting at distance ``step``) over ``level``.

    Returns the new values (inclusive prefix sums once ``step >= len(level)``) and the next step.
    """
    n = len(level)
    for _ in range(count):
        if step >= n:
            break
        nxt = []
        for i in range(n):
            if i >= step:
                s = Signal(shape)
                m.d.comb += s.eq(level[i] + level[i - step])
                nxt.append(s)
            else:
                nxt.append(level[i])
        level, step = nxt, step * 2
    return level, step


def segmented_scan(values, starts, *, step=1, until=None):
    """Segmented inclusive prefix sums (Kogge-Stone): ``starts[i]`` begins a new segment at ``i``.

    Returns ``(sums, started)``: ``sums[i]`` adds ``values`` from the start of ``i``'s segment
    (or from 0) to ``i``; ``started[i]`` is set when a segment starts anywhere in ``1 .. i``.

    ``step`` / ``until``: only the levels whose distance is in ``[step, until)`` (a pipelined
    scan registers ``(sums, started)`` after ``until=k`` and continues with ``step=k``).
    """
    v = [Value.cast(x) for x in values]
    f = [Value.cast(x) for x in starts]
    until = len(v) if until is None else until
    while step < min(len(v), until):
        v = [Mux(f[i], v[i], v[i] + v[i - step]) if i >= step else v[i] for i in range(len(v))]
        f = [f[i] | f[i - step] if i >= step else f[i] for i in range(len(f))]
        step *= 2
    return v, f
