"""Small arithmetic building blocks shared by the hardware blocks."""

from amaranth import Value

__all__ = ["tree_sum", "popcount"]


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
