"""Per-layer pruning report: a table for people, JSON for programs."""

import json
from dataclasses import asdict, dataclass, field

__all__ = ["LayerReport", "PruneReport"]


@dataclass
class LayerReport:
    """What the engine did to one weight tensor."""

    name: str            # qualified module name plus parameter, e.g. "features.0.weight"
    shape: tuple
    numel: int
    kept: int
    threshold: int       # magnitude threshold, in fixed-point codes
    tie_budget: int      # ties at the threshold granted by the engine
    scale: float         # quantization step (the largest one for per-channel scales)
    beats: int
    cycles: int          # engine clock cycles for this tensor (threshold search included)
    shape_after: tuple = None   # pattern "channel": the weight's shape after channel removal

    @property
    def sparsity(self):
        return 1.0 - self.kept / self.numel if self.numel else 0.0

    def to_dict(self):
        d = asdict(self)
        d["shape"] = list(self.shape)
        if self.shape_after is not None:
            d["shape_after"] = list(self.shape_after)
        d["sparsity"] = self.sparsity
        return d


@dataclass
class PruneReport:
    """The result of :func:`hwprune.prune`: one :class:`LayerReport` per pruned tensor."""

    backend: str
    lanes: int
    width: int
    amount: float
    write_back: str
    pattern: str = "unstructured"
    scope: str = "layer"
    layers: list = field(default_factory=list)
    search_cycles: int = 0      # global scope: the shared histogram passes
    totals: dict = field(default_factory=dict)   # channel: params/MACs before and after

    @property
    def numel(self):
        return sum(layer.numel for layer in self.layers)

    @property
    def kept(self):
        return sum(layer.kept for layer in self.layers)

    @property
    def cycles(self):
        return self.search_cycles + sum(layer.cycles for layer in self.layers)

    @property
    def sparsity(self):
        return 1.0 - self.kept / self.numel if self.numel else 0.0

    def __getitem__(self, name):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_dict(self):
        return {"backend": self.backend, "lanes": self.lanes, "width": self.width,
                "amount": self.amount, "pattern": self.pattern, "scope": self.scope,
                "write_back": self.write_back,
                "layers": [layer.to_dict() for layer in self.layers],
                "total": {"numel": self.numel, "kept": self.kept, "sparsity": self.sparsity,
                          "cycles": self.cycles, "search_cycles": self.search_cycles,
                          **self.totals}}

    def to_json(self, **kwargs):
        return json.dumps(self.to_dict(), **kwargs)

    def table(self):
        """The report as a fixed-width text table."""
        head = ("layer", "shape", "numel", "kept", "sparsity", "threshold", "cycles")
        rows = [(layer.name, "x".join(map(str, layer.shape)), f"{layer.numel:,}",
                 f"{layer.kept:,}", f"{layer.sparsity:.1%}", str(layer.threshold),
                 f"{layer.cycles:,}") for layer in self.layers]
        rows.append(("total", "", f"{self.numel:,}", f"{self.kept:,}", f"{self.sparsity:.1%}",
                     "", f"{self.cycles:,}"))
        widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
        align = ["<", "<", ">", ">", ">", ">", ">"]

        def fmt(row):
            return "  ".join(f"{v:{a}{w}}" for v, a, w in zip(row, align, widths))
        rule = "-" * len(fmt(head))
        what = (f"pattern {self.pattern}" if self.pattern.count(":") else
                f"{self.pattern} {self.scope}-wise, amount {self.amount:g}")
        title = (f"hwprune: {self.backend} engine, {self.lanes} lanes x {self.width} bits, "
                 f"{what}, write-back {self.write_back}")
        lines = [title, rule, fmt(head), rule, *map(fmt, rows[:-1]), rule, fmt(rows[-1])]
        if self.search_cycles:
            lines.append(f"(total includes {self.search_cycles:,} cycles of global threshold "
                         f"search)")
        if self.totals:
            t = self.totals
            lines.append(f"parameters {t['params_before']:,} -> {t['params_after']:,}, "
                         f"MACs {t['macs_before']:,} -> {t['macs_after']:,}")
        return "\n".join(lines)

    __str__ = table
