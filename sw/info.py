"""What a user asks first: the hardware blocks, their parameter domains, which backends and
boards run each, and where the build cache is. Everything comes from the block descriptions
(:data:`hwprune.contract.blocks.BLOCKS`), so this is also the proof that they are the single
source."""

import os
from pathlib import Path

from .contract.blocks import BLOCKS

__all__ = ["info", "info_table", "device_table"]

#: Backends that run a stream block's RTL (or its golden model) for any job.
_SIM_BACKENDS = ("golden", "verilator", "cocotb")
#: Boards whose bitstream holds the command bridge (hwprune.hw.boards.BOARDS).
_BOARDS = ("icebreaker", "ulx3s")


def _default_bitstreams():
    """Board -> the names of the blocks its default bitstream holds."""
    from .hw.boards import DEFAULT_BLOCKS, DEFAULT_LANES
    from .hw.bridge import blocks_bitmap, bridge_adapters
    out = {}
    for board in _BOARDS:
        names = DEFAULT_BLOCKS[board]
        bitmap = 0 if names is None else blocks_bitmap(list(names))
        out[board] = {a.block.name for a in bridge_adapters(DEFAULT_LANES[board], 8, bitmap)}
    return out


def _cache():
    path = Path(os.environ.get("HWPRUNE_CACHE_DIR") or Path.home() / ".cache" / "hwprune")
    size = files = 0
    if path.exists():
        for f in path.rglob("*"):
            if f.is_file():
                files += 1
                size += f.stat().st_size
    return {"path": str(path), "exists": path.exists(), "files": files, "bytes": size}


def info():
    """A JSON-ready dict: ``blocks`` (one entry per description) and ``cache``."""
    blocks = []
    defaults = _default_bitstreams()
    for b in BLOCKS:
        entry = b.to_json()
        if b.internal:
            entry["backends"] = {"uart-sim": "verilated" if b.library else "part of uart_core"}
            entry["boards"] = list(_BOARDS)
        else:
            entry["backends"] = {name: "rtl" if name != "golden" else "model"
                                 for name in _SIM_BACKENDS}
            entry["backends"]["torch"] = "tensor operations"
            on_board = b.bridge_bit is not None
            for name in ("uart-sim", "serial"):
                entry["backends"][name] = ("rtl" if on_board
                                           else "host (golden model, host_fallback=True)")
            # The boards whose default bitstream holds the block (``--blocks`` picks others).
            entry["boards"] = [board for board, names in defaults.items() if b.name in names]
        blocks.append(entry)
    return {"blocks": blocks, "cache": _cache()}


def info_table(data):
    """``info()`` as text for the terminal."""
    lines = []
    for b in data["blocks"]:
        kind = " (part of the board top)" if b.get("backends", {}).get("uart-sim") in (
            "verilated", "part of uart_core") else ""
        lines.append(f"{b['name']}{kind}: {b['doc']}")
        for p in b["domain"]["params"]:
            lines.append(f"    {p['name']:<15} {p['rule']}"
                         + (f" (default {p['default']})" if "default" in p else "")
                         + (f" (default: {p['default_from']})" if "default_from" in p else ""))
        for rule in b["domain"]["rules"]:
            lines.append(f"    rule            {rule}")
        backends = ", ".join(f"{k}: {v}" for k, v in b["backends"].items())
        lines.append(f"    backends        {backends}")
        lines.append(f"    boards          {', '.join(b['boards']) or '-'}")
    c = data["cache"]
    lines.append(f"build cache: {c['path']} ({c['files']} files, {c['bytes'] / 2**20:.1f} MiB)")
    return "\n".join(lines)


def device_table(data):
    """A device's answer (:func:`hwprune.uart.device_info`) as text for the terminal."""
    lines = [f"{data['device']}: protocol {data['protocol']}, {data['lanes']} lanes x "
             f"{data['width']} bits, frames up to {data['max_payload']} bytes"]
    for name, params in data["blocks"].items():
        lines.append(f"    {name:<20} " + ", ".join(f"{k}={v}" for k, v in params.items()))
    return "\n".join(line.rstrip() for line in lines)
