"""Every block behind the bridge: the N:M selector and the channel norms through the verilated
UART core (``uart-sim``), bit-exact with golden on random data and corner values, on a clean
and on a faulty line; the bitstream's block set chosen with ``blocks=``, reported by INFO and
planned from by the host (a block it lacks is a clear error, or the host's golden model when
the user asks for ``host_fallback``)."""

import copy

import numpy as np
import pytest
import torch

import hwprune
from hwprune.contract.channel_norms import ChannelJob, channel_norms
from hwprune.contract.nm_selector import NMJob, nm_select
from hwprune.contract.protocol import MAX_PAYLOAD, beat_bytes, mask_bytes
from hwprune.hw.boards import DEFAULT_BLOCKS
from hwprune.hw.bridge import blocks_bitmap, bridge_adapters
from hwprune.sim.stimulus import random_tiles
from hwprune.uart import BlockNotOnDevice, UartSimBackend

ALL = ("threshold_engine", "magnitude_histogram", "nm_selector", "channel_norms")
#: the ULX3S's default bitstream (all five blocks and the weight store)
ULX3S = DEFAULT_BLOCKS["ulx3s"]


def corner_tiles(rng, beats, lanes, width):
    """Random tiles with zeros, -2**(w-1), +-(2**(w-1)-1) and runs of equal values (ties)."""
    tiles, valid = random_tiles(rng, beats, lanes, width)
    lo = -(1 << (width - 1))
    pick = rng.random(tiles.shape)
    tiles[pick < 0.1] = 0
    tiles[(pick >= 0.1) & (pick < 0.15)] = lo
    tiles[(pick >= 0.15) & (pick < 0.2)] = -lo - 1
    tiles[(pick >= 0.2) & (pick < 0.3)] = 5
    return tiles, valid


def check_nm(backend, tiles, valid, m, n):
    got, = backend.run("nm_selector", [NMJob(tiles, valid, m, n)])
    want = nm_select(tiles, valid, m, n)
    for field in ("data", "mask", "values", "index"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
    assert (got.beats, got.kept) == (want.beats, want.kept)
    assert got.cycles >= want.cycles          # the device's count: the UART paces the unit


def check_channels(backend, tiles, valid, last):
    got, = backend.run("channel_norms", [ChannelJob(tiles, valid, last)])
    want = channel_norms(tiles, valid, last)
    np.testing.assert_array_equal(got.l1, want.l1)
    np.testing.assert_array_equal(got.l2, want.l2)
    assert got.beats == want.beats and got.cycles >= want.cycles


def channel_ends(rng, beats, sizes):
    """``last`` flags of channels with beat counts drawn from ``sizes`` (runs of equal sizes
    and changes between them), the last channel cut to end at ``beats``."""
    last = np.zeros(beats, dtype=bool)
    at = -1
    while True:
        at += int(rng.choice(sizes))
        if at >= beats - 1:
            break
        last[at] = True
    last[-1] = True
    return last


@pytest.mark.parametrize("lanes,width", [(16, 8), (8, 16), (8, 4)])
def test_nm_and_channel_norms_on_the_device_match_golden(rng, lanes, width):
    backend = UartSimBackend(lanes=lanes, width=width)
    assert set(backend.device_blocks) == {*ALL, "weight_store"}
    # Three full frames and a bit: frames, segments and the answer slots all roll over.
    beats = 3 * (MAX_PAYLOAD // beat_bytes(lanes, width)) + 11
    tiles, valid = corner_tiles(rng, beats, lanes, width)
    for m, n in ((4, 2), (8, 3), (4, 0), (8, 8)):
        check_nm(backend, tiles, valid, m, n)
    # Channels of one beat, of a few, and one longer than a whole frame.
    check_channels(backend, tiles, valid, channel_ends(rng, beats, (1, 1, 3, 7)))
    big = MAX_PAYLOAD // beat_bytes(lanes, width) + 5
    check_channels(backend, tiles, valid, channel_ends(rng, beats, (big,)))
    assert backend.stats["host_jobs"] == 0 and backend.stats["retries"] == 0


def test_nm_and_channel_norms_survive_line_faults(rng):
    """Bit flips and lost bytes on both lines: every pass still exact (a segment the device's
    counts and CRCs do not confirm is sent again), and the retries are reported. A channel is
    the channel norms' unit of retry (its sums live in the unit), so a channel must cross the
    line intact: at a bit-error rate of 1e-4 that is likely for short channels, and at 2e-5
    for channels of a few hundred weights."""
    backend = UartSimBackend(lanes=16, width=8, clocks_per_bit=8)
    backend.lib.set_faults(ber=1e-4, drop=1e-4, seed=11)
    tiles, valid = corner_tiles(rng, 1200, 16, 8)
    check_nm(backend, tiles, valid, 4, 2)
    check_channels(backend, tiles, valid, channel_ends(rng, 1200, (1, 2, 3)))
    retries = backend.stats["retries"]
    assert retries > 0
    backend.lib.set_faults(ber=2e-5, drop=0, seed=12)
    check_channels(backend, tiles, valid, channel_ends(rng, 1200, (20, 40)))
    assert backend.stats["retries"] > retries and backend.stats["host_jobs"] == 0


def test_a_block_missing_from_the_bitstream_is_named_before_anything_is_sent(rng):
    backend = UartSimBackend(lanes=8, width=8, blocks=["threshold_engine"])
    assert backend.device_blocks == ("threshold_engine",)
    assert backend.link.info()["blocks"] == blocks_bitmap(["threshold_engine"])
    assert backend.device_info()["blocks"] == {"threshold_engine": {}}
    assert backend.link.info()["hist_banks"] == 0     # no histogram
    tiles, valid = random_tiles(rng, 20, 8, 8)
    with pytest.raises(BlockNotOnDevice, match=r"holds threshold_engine, not nm_selector.*"
                                                r"host_fallback=True"):
        backend.run("nm_selector", [NMJob(tiles, valid, 4, 2)])
    assert backend.stats["bytes_sent"] == 0
    assert backend.store_capacity == 0
    # Without a store there is nothing to replay: a RUN is an unknown command there.
    from hwprune.contract.protocol import Cmd, ErrorCode
    from hwprune.uart import DeviceError
    with pytest.raises(DeviceError) as exc:
        backend.link.transact(Cmd.TE_RUN, bytes(8))
    assert (exc.value.code, exc.value.cmd) == (ErrorCode.UNKNOWN_CMD, Cmd.TE_RUN)
    # A model pruned through it is left as it was.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 8))
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(BlockNotOnDevice, match="magnitude_histogram"):
        hwprune.prune(model, 0.5, backend=backend, lanes=8, width=8)
    assert not hasattr(model[0], "weight_mask")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    # Asked for, the host runs the block in its golden model, and says so.
    fallback = UartSimBackend(lanes=8, width=8, blocks=["threshold_engine"], host_fallback=True)
    check_nm(fallback, tiles, valid, 4, 2)
    assert fallback.stats["host_jobs"] == 1


def test_the_bridge_refuses_a_block_that_does_not_fit():
    # The N:M selector needs lanes in multiples of 8; a channel's norms need an answer slot
    # as wide as its two sums (9 bytes at width 8, a 4-lane slot has 5).
    assert [a.block.name for a in bridge_adapters(4, 8)] == [*ALL[:2], "weight_store"]
    with pytest.raises(ValueError, match="nm_selector cannot sit behind the bridge at lanes=4"):
        bridge_adapters(4, 8, blocks_bitmap(["nm_selector"]))
    # The sparse MAC's results travel as 32-bit values: at width 16 they need more.
    with pytest.raises(ValueError, match="sparse_mac cannot sit behind the bridge at lanes=4, "
                                         "width=16"):
        bridge_adapters(4, 16, blocks_bitmap(["sparse_mac"]))
    with pytest.raises(ValueError, match="no bridge adapter for \\['score_unit'\\]"):
        blocks_bitmap(["score_unit"])


def test_the_ulx3s_bitstream_runs_every_block_on_the_device():
    """With the ULX3S's default block set, an N:M prune and a channel prune through uart-sim
    run every pass in the RTL (host_jobs == 0) and give golden's masks, and hwprune.run puts
    the pruned model's layers on the bridge's sparse MAC, equal to the reference bit for bit."""
    from hwprune.accelerate import reference, run

    def model():
        torch.manual_seed(3)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(),
                                   torch.nn.Conv2d(16, 8, 3), torch.nn.Flatten(),
                                   torch.nn.Linear(8 * 4 * 4, 16))
    backend = UartSimBackend(lanes=16, width=8, blocks=ULX3S)
    assert set(backend.device_blocks) == set(ULX3S)
    for kw in (dict(pattern="2:4"), dict(pattern="channel", amount=0.5,
                                          example_inputs=torch.randn(1, 3, 8, 8))):
        board, ref = model(), model()
        hwprune.prune(ref, backend="golden", lanes=16, width=8, **kw)
        hwprune.prune(board, backend=backend, lanes=16, width=8, **kw)
        for (name, want), (_, got) in zip(ref.state_dict().items(), board.state_dict().items()):
            assert torch.equal(got, want), (kw["pattern"], name)
    x = torch.randn(3, 3, 8, 8)
    report = run(board, x, backend=backend, lanes=16, width=8, clock_mhz=60)
    assert all(layer.on_unit for layer in report.layers)
    assert torch.equal(report.output, reference(board, x, lanes=16, width=8))
    assert backend.stats["host_jobs"] == 0 and backend.stats["passes"] > 0


def digits_mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 300), torch.nn.ReLU(),
                               torch.nn.Linear(300, 100), torch.nn.ReLU(),
                               torch.nn.Linear(100, 10))


def test_weights_cross_the_line_once_and_masks_come_back_as_bits():
    """A layer-scope 90 % prune of the digits MLP (64-300-100-10) through uart-sim: each tensor
    goes into the weight store once, the histogram passes and the masking pass read it there,
    and the masks come back one bit per weight; the masks equal golden's."""
    board, ref = digits_mlp(), digits_mlp()
    hwprune.prune(ref, 0.9, backend="golden", lanes=16, width=8)
    backend = UartSimBackend(lanes=16, width=8, blocks=ULX3S)
    assert backend.store_capacity * beat_bytes(16, 8) <= 65536
    hwprune.prune(board, 0.9, backend=backend, lanes=16, width=8)
    for a, b in zip(board.modules(), ref.modules()):
        if hasattr(b, "weight_mask"):
            assert torch.equal(a.weight_mask, b.weight_mask)
    weights = sum(m.weight.numel() for m in ref.modules() if hasattr(m, "weight_mask"))
    beats = sum(-(-m.weight.numel() // 16) for m in ref.modules() if hasattr(m, "weight_mask"))
    assert backend.stats["host_jobs"] == 0 and backend.stats["retries"] == 0
    assert backend.stats["store_uploads"] == 3 and backend.stats["store_hits"] > 0
    # Payload bytes: every beat sent once (16 weight bytes a beat whose lanes are all valid, the
    # store writing the lane bitmap; 18 for a tensor's last, part-filled beat) and 2 mask bytes
    # a beat back.
    partial = sum(m.weight.numel() % 16 != 0 for m in ref.modules() if hasattr(m, "weight_mask"))
    sent = (beats - partial) * 16 + partial * beat_bytes(16, 8)
    assert backend.stats["bytes_sent"] == sent
    assert backend.stats["bytes_received"] == beats * mask_bytes(16)
    # On the line, frames whole (headers, CRCs, configuration, status): a few % more.
    line = (backend.link.line_sent + backend.link.line_received) / weights
    assert (sent + beats * mask_bytes(16)) / weights <= line < 1.2


def test_a_run_beyond_the_stored_beats_is_refused():
    from hwprune.contract.protocol import Cmd, ErrorCode
    from hwprune.uart import DeviceError
    backend = UartSimBackend(lanes=16, width=8, blocks=ULX3S)
    backend._store_reset()
    with pytest.raises(DeviceError) as exc:
        backend.link.transact(Cmd.TE_RUN, (0).to_bytes(4, "little") + (1).to_bytes(4, "little"))
    assert (exc.value.code, exc.value.cmd) == (ErrorCode.BAD_LENGTH, Cmd.TE_RUN)


def test_a_tensor_larger_than_the_store_goes_in_slices(rng):
    """4,000 beats at 8 x 16 bits (the store holds 3,640): the histogram passes count both
    slices into one histogram, the masking pass carries the tie budget from one slice into the
    next; the threshold and the masks equal golden's."""
    from hwprune.contract import ThresholdJob, threshold_mask
    from hwprune.contract.magnitude_histogram import run, select_threshold_passes
    backend = UartSimBackend(lanes=8, width=16)
    beats = backend.store_capacity + 360
    tiles, valid = corner_tiles(rng, beats, 8, 16)
    keep = int(valid.sum()) // 3
    got = select_threshold_passes(lambda job: backend.run("magnitude_histogram", [job])[0],
                                  tiles, valid, 16, keep)
    want = select_threshold_passes(run, tiles, valid, 16, keep)
    assert got[:2] == want[:2]
    threshold, budget = want[:2]
    mine, = backend.run("threshold_engine", [ThresholdJob(tiles, valid, threshold, budget)])
    ref = threshold_mask(tiles, valid, threshold, budget)
    np.testing.assert_array_equal(mine.mask, ref.mask)
    assert (mine.kept, mine.ties_left) == (ref.kept, ref.ties_left) and ref.kept == keep
    assert backend.stats["host_jobs"] == 0
    # Every pass re-sends the slice the store lost to the other one; nothing more.
    passes = backend.stats["passes"]
    assert backend.stats["bytes_sent"] <= passes * beats * beat_bytes(8, 16)


def test_a_device_of_another_protocol_version_is_refused(monkeypatch):
    """A bitstream built by another hwprune (its INFO says another protocol version) is refused
    with a clear error before anything else is sent."""
    from hwprune.contract.protocol import PROTOCOL_VERSION
    from hwprune.uart import UartError, UartLink
    real = UartLink.info
    monkeypatch.setattr(UartLink, "info",
                        lambda link: {**real(link), "version": PROTOCOL_VERSION - 1})
    with pytest.raises(UartError, match=rf"protocol version {PROTOCOL_VERSION - 1}, this host "
                                        rf"{PROTOCOL_VERSION}: build its bitstream"):
        UartSimBackend(lanes=8, width=8, blocks=["threshold_engine"])
