"""Parameter domains: the one check of a block's build parameters.

Each block's description holds a :class:`Domain`; the golden model, the RTL constructor, every
backend and the CLI call :meth:`Domain.check`, so they accept and reject exactly the same
parameters with exactly the same message. A domain is plain data, so ``hwprune info --json``
prints it as it is enforced.
"""

from dataclasses import dataclass, field

__all__ = ["Param", "Domain"]


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Param:
    """One parameter: ``choices`` (a tuple of allowed values), or a ``lo``..``hi`` integer range,
    optionally restricted to multiples of ``multiple_of`` or powers of two."""

    name: str
    choices: tuple = None
    lo: int = None
    hi: int = None
    multiple_of: int = None
    power_of_two: bool = False
    default: object = None
    #: when omitted, take the value of this other parameter (e.g. act_width from width)
    default_from: str = None
    doc: str = ""

    def describe(self):
        if self.choices is not None:
            return f"one of {self.choices}"
        parts = ["an integer"]
        if self.power_of_two:
            parts = ["a power of two"]
        elif self.multiple_of:
            parts = [f"a multiple of {self.multiple_of}"]
        if self.lo is not None and self.hi is not None:
            parts.append(f"from {self.lo} to {self.hi}")
        elif self.lo is not None:
            parts.append(f"of at least {self.lo}")
        return " ".join(parts)

    def accepts(self, v):
        if not _is_int(v):
            return False
        if self.choices is not None:
            return v in self.choices
        if self.lo is not None and v < self.lo or self.hi is not None and v > self.hi:
            return False
        if self.multiple_of and v % self.multiple_of:
            return False
        if self.power_of_two and (v <= 0 or v & (v - 1)):
            return False
        return True

    def values(self):
        """Every allowed value (for the edge tests and ``hwprune info``); ranges are listed."""
        if self.choices is not None:
            return list(self.choices)
        return [v for v in range(self.lo, self.hi + 1) if self.accepts(v)]

    def to_json(self):
        d = {"name": self.name, "rule": self.describe()}
        for k in ("choices", "lo", "hi", "multiple_of", "default", "default_from"):
            v = getattr(self, k)
            if v is not None:
                d[k] = list(v) if isinstance(v, tuple) else v
        if self.power_of_two:
            d["power_of_two"] = True
        if self.doc:
            d["doc"] = self.doc
        return d


@dataclass(frozen=True)
class Domain:
    """The parameters a block is built with, and the cross-parameter rules between them."""

    block: str
    params: tuple
    #: (predicate(params) -> bool, message) rules checked after the per-parameter ones
    rules: tuple = field(default=())

    def names(self):
        return [p.name for p in self.params]

    def defaults(self):
        return {p.name: p.default for p in self.params if p.default is not None}

    def resolve(self, params):
        """``params`` with defaults filled in for omitted (or None) optional parameters."""
        out = dict(self.defaults())
        out.update({k: v for k, v in params.items() if v is not None})
        for p in self.params:
            if p.name not in out and p.default_from and p.default_from in out:
                out[p.name] = out[p.default_from]
        return out

    def check(self, **params):
        """Raise ValueError naming the allowed values unless ``params`` are in the domain.

        Returns the resolved parameters (defaults filled in).
        """
        unknown = set(params) - set(self.names())
        if unknown:
            raise ValueError(f"unknown parameter(s) {sorted(unknown)} for {self.block}; "
                             f"valid: {self.names()}")
        resolved = self.resolve(params)
        for p in self.params:
            if p.name not in resolved:
                raise ValueError(f"{p.name} is required by {self.block} ({p.describe()})")
            v = resolved[p.name]
            if not p.accepts(v):
                raise ValueError(f"{p.name} must be {p.describe()} for {self.block}, not {v!r}")
        for predicate, message in self.rules:
            if not predicate(resolved):
                raise ValueError(f"{message.format(**resolved)} for {self.block}")
        return resolved

    def accepts(self, **params):
        try:
            self.check(**params)
        except ValueError:
            return False
        return True

    def to_json(self):
        return {"params": [p.to_json() for p in self.params],
                "rules": [message for _, message in self.rules]}
