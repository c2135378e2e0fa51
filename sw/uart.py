"""Host side of the UART command protocol (docs/uart_protocol.md) and the UART backends.

``serial``
    a real board (iCEBreaker, ULX3S) programmed with the bitstream of ``hwprune synth``, through
    pyserial.
``uart-sim``
    the board's UART core (receiver, command bridge, engine, transmitter) verilated, with a C++
    shim that plays the host's serial line bit by bit: the whole board path (framing, CRCs, the
    receive FIFO, timeouts) runs here, a whole buffer of bytes per ctypes call.

Both speak the protocol through :class:`UartLink` over a *transport* (``write(bytes)``,
``read(n)`` that returns fewer bytes on timeout, ``resync()``), so they share every line of
protocol code. Every pass is checked end to end: the device's beat and kept counts and the CRC-32
of the bytes it took in and sent out must equal the host's, or the pass is retried.
"""

import hashlib
import time
import zlib

import numpy as np

from .backend_api import Backend
from .contract.blocks import BLOCKS
from .contract.magnitude_histogram import HistogramResult
from .contract.channel_norms import ChannelResult, check_job as check_channel_job
from .contract.nm_selector import NMResult, check_job as check_nm_job, nm_compact
from .contract.protocol import (CN_STATUS_FIELDS, DEVICE_SYNC, INFO_FIELDS, INFO_PARAMS,
                                MAX_PAYLOAD, PROTOCOL_VERSION,
                                MH_SELECT_FIELDS, MH_STATUS_FIELDS, NE_STATUS_FIELDS,
                                NM_STATUS_FIELDS, SM_STATUS_FIELDS,
                                STATUS_FIELDS, STORE_BIT, STORE_BYTES, WS_STATUS_FIELDS, Cmd, data_bytes,
                                mask_bytes, ErrorCode, Status, beat_bytes, crc8, crc16,
                                encode_frame, pack_beats, split_frames, unpack_beats,
                                unpack_norms)
from .contract.threshold_engine import MaskResult

__all__ = ["crc8", "crc16", "encode_frame", "split_frames", "pack_beats", "unpack_beats",
           "UartError", "DeviceTimeout", "DeviceError", "FrameError", "PassError",
           "IntegrityError", "BlockNotOnDevice", "SerialTransport", "SimTransport", "UartLink", "UartBackend",
           "SerialBackend", "UartSimBackend", "bitstream_blocks", "reported_params", "device_info"]

_ERROR_NAMES = {int(v): v.name for v in ErrorCode}
_CMD_NAMES = {int(v): v.name for v in Cmd}


def bitstream_blocks(bitmap):
    """The names of the blocks in an INFO ``blocks`` bitmap (bit ``Block.bridge_bit``, and
    ``weight_store`` for bit STORE_BIT)."""
    names = tuple(b.name for b in BLOCKS
                  if b.bridge_bit is not None and bitmap >> b.bridge_bit & 1)
    return names + (("weight_store",) if bitmap >> STORE_BIT & 1 else ())


def reported_params(info):
    """Block -> the parameters an INFO answer reports (``INFO_PARAMS``: the histogram's counter
    ``banks``), for the blocks the bitstream holds."""
    held = bitstream_blocks(info["blocks"])
    out = {}
    for field, (block, param) in INFO_PARAMS.items():
        if block in held:
            out.setdefault(block, {})[param] = info[field]
    return out


def device_info(link):
    """What the device's bitstream holds, as the device reports it (INFO, and WS_STATUS when it
    has a weight store): ``protocol`` (version), ``lanes``, ``width``, ``max_payload`` and
    ``blocks``: name -> the parameters the device reports beyond lanes and width
    (:func:`reported_params`, and the weight store's ``capacity`` in beats)."""
    info = link.info()
    reported = reported_params(info)
    blocks = {name: dict(reported.get(name, {})) for name in bitstream_blocks(info["blocks"])}
    if "weight_store" in blocks:
        blocks["weight_store"]["capacity"] = link.status(Cmd.WS_STATUS,
                                                         WS_STATUS_FIELDS)["capacity"]
    return {"protocol": info["version"], "lanes": info["lanes"], "width": info["width"],
            "max_payload": info["max_payload"], "blocks": blocks}


class UartError(RuntimeError):
    """Something went wrong on the UART link."""


class DeviceTimeout(UartError, TimeoutError):
    """The device did not answer in time."""


class DeviceError(UartError):
    """The device answered with an ERROR frame."""

    def __init__(self, code, cmd):
        self.code, self.cmd = code, cmd
        super().__init__(f"device reported {_ERROR_NAMES.get(code, code)} for command "
                         f"{_CMD_NAMES.get(cmd, hex(cmd))}")


class FrameError(UartError):
    """An answer frame arrived damaged (CRC) or was not the expected answer."""


class PassError(UartError):
    """A TE_DATA answer's status byte reported a damaged or incomplete request."""


class IntegrityError(UartError):
    """The device's counts or checksums of a pass differ from the host's."""


class BlockNotOnDevice(UartError, LookupError):
    """A pass asked for a block that the device's bitstream does not hold."""


class SerialTransport:
    """A serial port (pyserial): a board's USB UART, or any pyserial URL (``loop://``...)."""

    def __init__(self, port, *, baudrate=3_000_000, timeout=1.0, device_timeout=0.1):
        import serial
        self.port = port
        self.timeout = timeout
        self.device_timeout = device_timeout
        self._serial = serial.serial_for_url(port, baudrate=baudrate, timeout=timeout)

    def write(self, data):
        self._serial.write(bytes(data))

    def read(self, n):
        return self._serial.read(n)

    def resync(self):
        """Stay quiet past the device's idle timeout, then drop whatever arrived."""
        time.sleep(2 * self.device_timeout)
        self._serial.reset_input_buffer()

    def close(self):
        self._serial.close()

    def describe(self):
        return f"serial port {self.port!r} (read timeout {self.timeout} s)"


class SimTransport:
    """The verilated UART core (:class:`hwprune.sim.uart_lib.UartCoreLib`) as a serial line.

    Time is simulated: a read gives up after ``idle_cycles`` clock cycles in which no byte moved
    on either line (by default four device timeouts, plus the clocks the device takes to
    replay its whole weight store into a block, the longest a command may keep the line
    quiet).
    """

    def __init__(self, lib, *, idle_cycles=None):
        self.lib = lib
        self.idle_cycles = (idle_cycles or 4 * lib.timeout + 40 * lib.clocks_per_bit
                            + 2 * STORE_BYTES)

    def write(self, data):
        self.lib.send(data)

    def read(self, n):
        return self.lib.recv(n, idle_cycles=self.idle_cycles)

    def resync(self):
        self.lib.drain(idle_cycles=2 * self.lib.timeout + 20 * self.lib.clocks_per_bit)

    def close(self):
        pass

    def describe(self):
        return (f"simulated UART core (gives up after {self.idle_cycles} idle cycles, "
                f"{self.lib.clocks_per_bit} clocks per bit)")


class UartLink:
    """The protocol's commands over a transport."""

    def __init__(self, transport):
        self.transport = transport
        self.discarded = 0  # bytes skipped while hunting for an answer's SYNC
        #: bytes on the line (frames whole: SYNC, header, payload, CRC), host to device and back
        self.line_sent = self.line_received = 0

    def _read_exact(self, n, what):
        data = self.transport.read(n)
        if len(data) < n:
            raise DeviceTimeout(f"no answer from the device: got {len(data)} of {n} bytes of "
                                f"{what} from {self.transport.describe()}; is the board "
                                f"programmed with a matching bitstream and the port right?")
        return bytes(data)

    def read_frame(self, what="an answer"):
        """Read the next valid-header frame; return (cmd, payload). Damaged headers are skipped."""
        while True:
            sync = self._read_exact(1, what)
            if sync[0] != DEVICE_SYNC:
                self.discarded += 1
                continue
            head = self._read_exact(4, what)
            if crc8(head[:3]) != head[3]:
                # A SYNC byte inside junk: hunt on (the real header may start inside `head`,
                # but answers never follow junk without the host having flushed first).
                self.discarded += 5
                continue
            cmd, length = head[0], head[1] | head[2] << 8
            rest = self._read_exact(length + 2, what)
            payload, crc = rest[:length], int.from_bytes(rest[length:], "little")
            if crc16(head[:3] + payload) != crc:
                raise FrameError(f"answer {_CMD_NAMES.get(cmd & 0x7F, hex(cmd))} arrived with a "
                                 f"bad CRC-16")
            return cmd, payload

    def transact(self, cmd, payload=b""):
        """Send a command; return the payload of its answer (raise on an ERROR frame)."""
        frame = encode_frame(cmd, payload)
        self.transport.write(frame)
        self.line_sent += len(frame)
        got, answer = self.read_frame(f"the answer to {_CMD_NAMES.get(cmd, hex(cmd))}")
        self.line_received += 7 + len(answer)
        if got == Cmd.ERROR:
            raise DeviceError(answer[0] if answer else 0, answer[1] if len(answer) > 1 else 0)
        if got != cmd | 0x80:
            raise FrameError(f"expected the answer to {_CMD_NAMES.get(cmd, hex(cmd))}, got "
                             f"command byte {got:#04x}")
        return answer

    @staticmethod
    def _fields(fields, payload):
        if len(payload) != sum(n for _, n in fields):
            raise FrameError(f"answer of {len(payload)} bytes, expected "
                             f"{sum(n for _, n in fields)}")
        out, pos = {}, 0
        for name, n in fields:
            out[name] = int.from_bytes(payload[pos:pos + n], "little")
            pos += n
        return out

    def info(self):
        return self._fields(INFO_FIELDS, self.transact(Cmd.INFO))

    def status(self, cmd=Cmd.TE_STATUS, fields=STATUS_FIELDS):
        """A STATUS answer (the threshold engine's unless ``cmd`` and ``fields`` say)."""
        return self._fields(fields, self.transact(cmd))

    def configure(self, threshold, tie_budget):
        self.configure_block(Cmd.TE_CONFIG, int(threshold).to_bytes(2, "little")
                             + int(tie_budget).to_bytes(4, "little"))

    def configure_block(self, cmd, payload):
        """A CONFIG command; its answer is one zero byte."""
        answer = self.transact(cmd, payload)
        if answer != b"\0":
            raise FrameError(f"unexpected {_CMD_NAMES.get(cmd, hex(cmd))} answer {answer!r}")

    def data(self, payload, cmd=Cmd.TE_DATA):
        """Send one echoing DATA frame (TE_DATA unless ``cmd`` says); return (answer beat
        bytes, status byte)."""
        answer = self.transact(cmd, payload)
        if len(answer) != len(payload) + 1:
            raise FrameError(f"{_CMD_NAMES.get(cmd, hex(cmd))} answer of {len(answer)} bytes "
                             f"for {len(payload)} sent")
        return answer[:-1], answer[-1]

    def histogram_config(self, shift, match_en, match_value, keep):
        answer = self.transact(Cmd.MH_CONFIG, bytes([int(shift), int(match_en),
                                                     int(match_value)])
                               + int(keep).to_bytes(4, "little"))
        if answer != b"\0":
            raise FrameError(f"unexpected MH_CONFIG answer {answer!r}")

    def histogram_data(self, payload):
        """Send one MH_DATA frame; return its status byte (the answer carries nothing else)."""
        answer = self.transact(Cmd.MH_DATA, payload)
        if len(answer) != 1:
            raise FrameError(f"MH_DATA answer of {len(answer)} bytes, expected the status byte")
        return answer[0]

    def histogram_status(self):
        return self._fields(MH_STATUS_FIELDS, self.transact(Cmd.MH_STATUS))

    def histogram_select(self):
        return self._fields(MH_SELECT_FIELDS, self.transact(Cmd.MH_SELECT))

    def resync(self):
        self.transport.resync()


class UartBackend(Backend):
    """The engine behind the UART bridge, over a :class:`UartLink` (base of the UART backends).

    A pass survives a faulty line. Its beats go in frames of at most ``max_payload`` bytes, in
    *segments* of a few frames; a segment counts only once the device's STATUS (beats, kept
    count, CRC-32 of the bytes it took in and sent out, all since the segment's TE_CONFIG)
    equals the host's. Anything else (a damaged or lost byte, a device that reset, no answer)
    rolls the pass back to the end of the last counted segment: the host reconfigures the engine
    with the threshold and the tie budget left at that point (counted from the kept ties in the
    answers it accepted) and sends from there, in frames half as large (they grow back after a
    run of clean frames). So every beat counts exactly once and the result is bit-exact.
    ``retries`` failures in a row with no segment counted give up with a clear error.
    ``stats``: passes, segments, retries, bytes sent and received, host jobs.
    """

    #: frames per segment (a STATUS check ends each)
    SEGMENT_FRAMES = 4
    #: the blocks' parameters the device reports, beyond lanes and width (none until its INFO
    #: answer is read)
    device_params = {}
    #: clean frames before a shrunk frame size doubles again
    GROW_AFTER = 8

    def __init__(self, *, lanes, width, transport, retries=8, check_info=True,
                 host_fallback=False, use_store=True):
        super().__init__(lanes=lanes, width=width)
        #: run a block the bitstream does not hold in its golden model on the host (counted in
        #: ``stats["host_jobs"]``) instead of raising BlockNotOnDevice
        self.host_fallback = bool(host_fallback)
        self.link = UartLink(transport)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, not {retries!r}")
        self.retries = retries
        self.nbytes = beat_bytes(lanes, width)
        self.stats = {"passes": 0, "segments": 0, "retries": 0, "bytes_sent": 0,
                      "bytes_received": 0, "host_jobs": 0, "store_uploads": 0,
                      "store_hits": 0}
        if check_info:
            info = self._retrying(self.link.info, "INFO")
            if info["version"] != PROTOCOL_VERSION:
                raise UartError(f"the device speaks protocol version {info['version']}, this "
                                f"host {PROTOCOL_VERSION}: build its bitstream from this "
                                f"hwprune (hwprune synth)")
            if (info["lanes"], info["width"]) != (lanes, width):
                raise UartError(f"the device runs an engine of lanes={info['lanes']}, "
                                f"width={info['width']}, not lanes={lanes}, width={width}")
            self.max_payload = info["max_payload"]
            #: the blocks the bitstream holds, as its INFO answer reports them
            self.device_blocks = bitstream_blocks(info["blocks"])
            has_store = bool(info["blocks"] >> STORE_BIT & 1)
            self.device_params = reported_params(info)
        else:
            self.max_payload = MAX_PAYLOAD
            self.device_blocks = bitstream_blocks(0x7F)
            has_store = False
        #: beats the device's weight store holds (0: none, or not used)
        self.store_capacity = 0
        if has_store and use_store:
            self.store_capacity = self._retrying(self._store_status, "WS_STATUS")["capacity"]
        self._stored, self._store_end = {}, 0
        #: per load command, the key of the program the device holds (None: unknown)
        self._programs = {}
        self._max_chunk = max(1, self.max_payload // self.nbytes)
        self._chunk, self._clean = self._max_chunk, 0

    def params(self, block):
        desc, params = super().params(block)
        if desc.name == "net_engine":                # the engine the bridge holds
            from .contract import net_engine as ne
            params = ne.bridge_engine(self.lanes, self.width)
        elif desc.name in self.device_params:        # the parameters the device reports
            params = desc.check(**{**params, **self.device_params[desc.name]})
        elif desc.name == "sparse_mac":              # the unit the bridge holds
            from .contract import sparse_mac as sm
            try:
                params, _ = sm.bridge_mac(self.lanes, self.width)
            except ValueError:
                pass                                 # no bridge holds one: it is not on it
        return desc, params

    def _frame_ok(self):
        """A clean frame: after GROW_AFTER of them a shrunk frame size doubles again."""
        self._clean += 1
        if self._clean >= self.GROW_AFTER and self._chunk < self._max_chunk:
            self._chunk, self._clean = min(self._max_chunk, 2 * self._chunk), 0

    def _frame_failed(self):
        """A failure: frames half as large from now on."""
        self._chunk, self._clean = max(1, self._chunk // 2), 0

    _RETRIED = (DeviceError, FrameError, PassError, IntegrityError, DeviceTimeout)

    def _retrying(self, fn, what):
        """``fn()`` with the link resynchronised and ``fn`` run again after a failure."""
        for attempt in range(self.retries + 1):
            try:
                self.link.resync()
                return fn()
            except self._RETRIED as exc:
                if attempt == self.retries:
                    raise _gave_up(exc, f"gave up after {attempt + 1} failed attempts in a "
                                        f"row ({what})")
                self.stats["retries"] += 1

    def run(self, block, jobs):
        """Run ``jobs`` on ``block`` on the device. A block the bitstream does not hold (INFO
        names those it does) raises :class:`BlockNotOnDevice` before anything is sent, unless
        the backend was made with ``host_fallback=True``: then it runs in its golden model on
        the host, counted in ``stats["host_jobs"]``."""
        desc, _ = self.params(block)
        on_device = {"threshold_engine": self._threshold_pass,
                     "magnitude_histogram": self._histogram_pass,
                     "nm_selector": self._nm_pass,
                     "channel_norms": self._channel_pass,
                     "net_engine": self._net_pass,
                     "sparse_mac": self._mac_pass}
        if desc.name not in self.device_blocks or desc.name not in on_device:
            if not self.host_fallback:
                raise BlockNotOnDevice(
                    f"the device ({self.link.transport.describe()}) holds "
                    f"{', '.join(self.device_blocks) or 'no block'}, not {desc.name}; use a "
                    f"bitstream with it (hwprune synth --blocks ...) or host_fallback=True to "
                    f"run {desc.name} in its golden model on the host")
            self.stats["host_jobs"] += len(jobs)
            return [desc.golden(job) for job in jobs]
        return [on_device[desc.name](job) for job in jobs]

    # --- the weight store: a tensor sent once, its passes replayed on the chip ----------------
    def _failure(self, exc, failures, why=""):
        """One more failure in a row: counted in ``stats["retries"]``, frames halved, the link
        resynchronised. Past ``retries`` failures in a row, ``exc`` is raised, saying so and
        ``why``. Returns the failures in a row."""
        failures += 1
        self.stats["retries"] += 1
        self._frame_failed()
        if failures > self.retries:
            raise _gave_up(exc, f"gave up after {failures} failed attempts in a row"
                                + (f" {why}" if why else ""))
        self.link.resync()
        return failures

    def device_info(self):
        """:func:`device_info` of the device (retried on a faulty line)."""
        return self._retrying(lambda: device_info(self.link), "INFO")

    def _store_status(self):
        return self.link.status(Cmd.WS_STATUS, WS_STATUS_FIELDS)

    def _place(self, packed):
        """The first beat of ``packed`` in the device's weight store, sent there if it is not
        already; None when the device has no store (or ``use_store=False``) or the tensor does
        not fit it (its passes then send their beats in DATA frames)."""
        beats = packed.shape[0]
        if not self.store_capacity or not 0 < beats <= self.store_capacity:
            return None
        key = (hashlib.blake2b(packed.tobytes(), digest_size=16).digest(), beats)
        if key in self._stored:
            self.stats["store_hits"] += 1
            return self._stored[key]
        if self._store_end + beats > self.store_capacity:
            self._store_reset()
        failures = 0
        while True:
            try:
                first = self._store_end
                self._store_upload(packed)
                break
            except self._RETRIED as exc:
                failures = self._failure(exc, failures, "(storing a tensor)")
                self._store_check()
        self._stored[key] = first
        self.stats["store_uploads"] += 1
        return first

    def _store_reset(self):
        """Empty the store (WS_CONFIG) and forget what it held."""
        self._retrying(lambda: self.link.configure_block(Cmd.WS_CONFIG, b""), "WS_CONFIG")
        self._stored, self._store_end = {}, 0

    def _store_check(self):
        """After a failure: does the store still hold what the host put there? (A device that
        reset has emptied it.) If not, empty it and forget."""
        held = self._retrying(self._store_status, "WS_STATUS")["beats"]
        if held != self._store_end:
            self._store_reset()
            return False
        return True

    def _store_upload(self, packed):
        """Append ``packed`` to the store in WS_DATA frames. A frame counts on the device only
        once its CRC checked out; after a failed or unanswered frame WS_STATUS says whether it
        did."""
        done, beats = 0, packed.shape[0]
        nd = data_bytes(self.lanes, self.width)
        full = pack_beats(np.zeros((1, self.lanes)), np.ones((1, self.lanes), dtype=bool),
                          self.width)[0, nd:]
        # Beats whose every lane is valid go without their bitmap (WS_DENSE frames): the store
        # writes it. A frame holds beats of one kind.
        dense_rows = (np.all(packed[:, nd:] == full, axis=1) if nd < self.nbytes
                      else np.zeros(beats, dtype=bool))
        kind_ends = np.append(np.flatnonzero(np.diff(dense_rows)) + 1, beats)
        failures = 0
        while done < beats:
            dense = bool(dense_rows[done])
            run_end = int(kind_ends[np.searchsorted(kind_ends, done, side="right")])
            cap = (min(max(1, self._chunk * self.nbytes // nd), self.max_payload // nd)
                   if dense else self._chunk)
            n = min(cap, run_end - done)
            part = packed[done:done + n]
            cmd = Cmd.WS_DENSE if dense else Cmd.WS_DATA
            sent = np.ascontiguousarray(part[:, :nd] if dense else part).tobytes()
            try:
                answer = self.link.transact(cmd, sent)
                if answer != b"\0":
                    raise PassError(f"{cmd.name} answer {answer!r}")
            except self._RETRIED as exc:
                failures = self._failure(exc, failures, f"(storing a tensor, at beat {done} "
                                                        f"of {beats})")
                held = self._retrying(self._store_status, "WS_STATUS")["beats"]
                if held == self._store_end:              # it did not count: send it again
                    continue
                if held != self._store_end + n:
                    raise IntegrityError(f"the weight store holds {held} beats, the host "
                                         f"expected {self._store_end} or "
                                         f"{self._store_end + n}")
                # it counted; its answer was lost
            self._store_end += n
            self.stats["bytes_sent"] += len(sent)
            done, failures = done + n, 0
            self._frame_ok()

    def _with_store(self, packed, attempt, what):
        """``attempt(first)`` with the tensor in the store, retried after a failure (the
        store checked and the tensor placed again if the device lost it)."""
        failures = 0
        while True:
            first = self._place(packed)
            try:
                return attempt(first)
            except self._RETRIED as exc:
                failures = self._failure(exc, failures, f"({what} from the weight store)")
                self._store_check()

    def _slices(self, beats):
        """(start, stop) of the slices of a tensor of ``beats`` beats that fit the store."""
        cap = self.store_capacity
        return [(a, min(a + cap, beats)) for a in range(0, beats, cap)]

    def _histogram_run(self, job, packed, want_counted):
        """A histogram pass from the store: MH_CONFIG, an MH_RUN per slice of the tensor (a
        tensor larger than the store goes in slices; the bins accumulate across them), then
        MH_SELECT (its beats, the CRC-32 of the bytes it counted and the counted weights
        checked). The slices are counted last first: the counts do not depend on the order,
        and the first slice, which the masking pass wants first, stays in the store."""
        beats = packed.shape[0]
        order = self._slices(beats)[::-1]
        crc = 0
        for a, b in order:
            crc = zlib.crc32(packed[a:b].tobytes(), crc)
        failures = 0
        while True:
            try:
                self.link.histogram_config(job.shift, job.match_en, job.match_value, job.keep)
                for a, b in order:
                    first = self._place(packed[a:b])
                    answer = self.link.transact(Cmd.MH_RUN, first.to_bytes(4, "little")
                                                + (b - a).to_bytes(4, "little"))
                    if answer != b"\0":
                        raise PassError(f"MH_RUN answer {answer!r}")
                st = self.link.histogram_select()
                want = {"beats": beats, "in_crc": crc, "counted": want_counted}
                got = {k: st[k] for k in want}
                if got != want:
                    raise IntegrityError(f"histogram pass check failed: device {got}, host "
                                         f"{want}")
                break
            except self._RETRIED as exc:
                failures = self._failure(exc, failures, "(histogram from the weight store)")
                self._store_check()
        self.stats["passes"] += 1
        return HistogramResult(found_bin=st["found_bin"], above=st["above"], ties=st["ties"],
                               counted=st["counted"], cycles=st["cycles"])

    def _threshold_run(self, job, tiles, packed, ties):
        """A masking pass from the store, slice by slice (a tensor larger than the store goes
        in slices, in order: the tie budget carries on): per segment TE_CONFIG (threshold, tie
        budget left), TE_RUN (the keep mask back as bits), TE_STATUS checked; the kept weights
        are the host's own tiles under the device's mask."""
        beats = packed.shape[0]
        mb = mask_bytes(self.lanes)
        mask = np.zeros((beats, self.lanes), dtype=bool)
        done, budget, cycles = 0, int(job.tie_budget), 0
        for a, b in self._slices(beats):
            part = packed[a:b]
            while done < b:
                n = min(b - done, max(1, self.max_payload // mb),
                        max(1, self._chunk * self.nbytes // mb))

                def attempt(first, done=done, n=n, budget=budget, a=a):
                    self.link.configure(job.threshold, budget)
                    answer = self.link.transact(Cmd.TE_RUN,
                                                (first + done - a).to_bytes(4, "little")
                                                + n.to_bytes(4, "little"))
                    if len(answer) != n * mb + 1:
                        raise FrameError(f"TE_RUN answer of {len(answer)} bytes for {n} beats")
                    if answer[-1]:
                        raise PassError(f"TE_RUN answer reports status {answer[-1]:#x}")
                    raw = np.frombuffer(answer[:-1], dtype=np.uint8).reshape(n, mb)
                    mk = np.unpackbits(raw, axis=1, bitorder="little")[:, :self.lanes]
                    mk = mk.astype(bool)
                    used = int(np.count_nonzero(mk & ties[done:done + n]))
                    st = self.link.status()
                    want = {"beats": n, "kept": int(mk.sum()),
                            "ties_left": budget - min(used, budget),
                            "in_crc": zlib.crc32(packed[done:done + n].tobytes()),
                            "out_crc": zlib.crc32(answer[:-1])}
                    got = {k: st[k] for k in want}
                    if got != want:
                        raise IntegrityError(f"pass check failed: device {got}, host {want}")
                    return mk, want["ties_left"], st["cycles"]

                mk, budget, spent = self._with_store(part, attempt, "masking")
                mask[done:done + n] = mk
                cycles += spent
                done += n
                self.stats["segments"] += 1
                self.stats["bytes_received"] += n * mb
                self._frame_ok()
        self.stats["passes"] += 1
        data = np.where(mask, tiles, 0).astype(np.int16)
        return MaskResult(data=data, mask=mask, beats=beats, kept=int(mask.sum()),
                          ties_left=budget, cycles=cycles)

    def _check_tiles(self, data, lane_valid):
        hi = 1 << (self.width - 1)
        tiles = np.asarray(data)
        if tiles.size and (tiles.min() < -hi or tiles.max() >= hi):
            raise ValueError(f"weights must fit {self.width} bits")
        tiles = tiles.reshape(-1, self.lanes)
        valid = np.asarray(lane_valid, dtype=bool).reshape(-1, self.lanes)
        return tiles, valid

    def _nm_pass(self, job):
        """One N:M pass on the device: NM_CONFIG (m, n) and the tiles in checked segments; the
        answer carries the kept weights and the keep mask."""
        check_nm_job(job)
        tiles, valid = self._check_tiles(job.data, job.lane_valid)
        packed = pack_beats(tiles, valid, self.width)
        config = bytes([int(job.m), int(job.n)])
        raw, cycles = self._echo_pass(
            (Cmd.NM_CONFIG, Cmd.NM_DATA, Cmd.NM_STATUS, NM_STATUS_FIELDS), config, packed, 1,
            lambda answer, beats: {"kept": int(np.count_nonzero(self._unpack(answer)[1]))})
        data, mask = self._unpack(raw)
        values, index = nm_compact(data, mask, int(job.m))
        self.stats["passes"] += 1
        return NMResult(data=data, mask=mask, values=values, index=index, beats=len(packed),
                        kept=int(mask.sum()), cycles=cycles)

    def _channel_pass(self, job):
        """One channel-norm pass on the device: runs of channels of the same length, each with
        CN_CONFIG (beats per channel) and its beats in checked segments of whole channels; the
        norms come back in the answer slot of each channel's last beat."""
        check_channel_job(job)
        tiles, valid = self._check_tiles(job.data, job.lane_valid)
        last = np.asarray(job.last, dtype=bool)
        ends = np.flatnonzero(last)
        sizes = np.diff(np.concatenate([[-1], ends]))
        packed = pack_beats(tiles, valid, self.width)
        l1, l2, cycles, at, ch = [], [], 0, 0, 0
        while ch < len(sizes):
            per = int(sizes[ch])
            run = ch
            while run < len(sizes) and sizes[run] == per:
                run += 1
            stop = at + per * (run - ch)
            raw, spent = self._echo_pass(
                (Cmd.CN_CONFIG, Cmd.CN_DATA, Cmd.CN_STATUS, CN_STATUS_FIELDS),
                per.to_bytes(4, "little"), packed[at:stop], per,
                lambda answer, beats, per=per: {"channels": beats // per})
            a, b = unpack_norms(raw, self.width)
            l1.append(a[per - 1::per])
            l2.append(b[per - 1::per])
            cycles += spent
            at, ch = stop, run
        self.stats["passes"] += 1
        empty = np.zeros(0, dtype=np.int64)
        return ChannelResult(l1=np.concatenate(l1) if l1 else empty,
                             l2=np.concatenate(l2) if l2 else empty.copy(),
                             beats=int(tiles.shape[0]), cycles=cycles)

    # --- the network engine: a deployed network --------------------------------------------
    def _net_status(self):
        return self.link.status(Cmd.NE_STATUS, NE_STATUS_FIELDS)

    def _net_load(self, program, params):
        """Load ``program`` into the device's network engine (:meth:`_load_program`)."""
        from .contract import net_engine as ne
        self._load_program(ne.program_bytes(program, **params),
                           ne.ne_config(program, new_program=True),
                           Cmd.NE_CONFIG, Cmd.NE_LOAD, self._net_status)

    def _load_program(self, packed, start, config_cmd, load_cmd, status):
        """Load ``packed`` (program beats x bytes) into a block that holds a program (the
        network engine, the sparse MAC), unless it holds it already (known by its content and
        the device's program flag). ``start`` (a ``config_cmd`` payload) makes the block forget
        its program; then ``load_cmd`` frames, committed on their CRC; after each, ``status()``
        says whether it was (a lost answer is not a lost frame); a device that reset starts
        the load again; the end checks the beats and the CRC-32 of all of them."""
        total, nbytes = packed.shape
        key = hashlib.blake2b(packed.tobytes(), digest_size=16).hexdigest()
        if self._programs.get(load_cmd) == key and status()["program"]:
            return
        self._programs[load_cmd] = None
        per_frame = max(1, self.max_payload // nbytes)
        # `pending`: the beats of the frame last sent, until the status says whether they were
        # committed; nothing is sent before that is known, so no frame is ever written twice.
        failures, done, pending = 0, None, 0
        while True:
            try:
                if done is None:
                    self.link.configure_block(config_cmd, start)
                    done, pending = 0, 0
                st = status()
                if pending and st["program_beats"] == done + pending:
                    done += pending
                    self.stats["bytes_sent"] += pending * nbytes
                    self._frame_ok()
                    failures = 0
                elif st["program_beats"] != done:
                    sent, done = done, None        # the device reset: start again
                    raise IntegrityError(f"the device holds {st['program_beats']} program "
                                         f"beats, the host sent {sent}")
                elif pending:
                    pending = 0                    # not committed: it is sent again
                    raise PassError(f"a {load_cmd.name} frame was not committed")
                pending = 0
                if done == total:
                    break
                # frames as large as the link's current frame size (halved after a failure)
                n = min(per_frame, max(1, self._chunk * self.nbytes // nbytes), total - done)
                pending = n
                answer = self.link.transact(load_cmd, packed[done:done + n].tobytes())
                if len(answer) != 1 or answer[0]:
                    raise PassError(f"{load_cmd.name} answer {answer.hex()}")
            except self._RETRIED as exc:
                failures = self._failure(exc, failures, f"loading the program at beat {done}")
        st = status()
        want = zlib.crc32(packed.tobytes())
        if not (st["program"] and st["program_beats"] == total and st["program_crc"] == want):
            raise IntegrityError(f"the device's program check failed: {st}, host beats {total} "
                                 f"crc {want:#010x}")
        self._programs[load_cmd] = key

    def _net_pass(self, job):
        """Run a :class:`~hwprune.contract.net_engine.NetJob` on the device's engine: the
        program loaded once, the inputs in NE_RUN frames of whole vector slots
        (:meth:`_run_vectors`)."""
        from .contract import net_engine as ne
        params = ne.bridge_engine(self.lanes, self.width)
        program = job.program
        ne.check_program(program, **params)
        frames = ne.run_frame(program, job.inputs)
        out = np.zeros((len(frames), program.out_features), dtype=np.int64)

        def results(first, n, raw):
            out[first:first + n] = ne.run_results(program, raw, n)
        totals = self._run_vectors(
            frames, load=lambda: self._net_load(program, params), config_cmd=Cmd.NE_CONFIG,
            config=ne.ne_config(program, skip_zero=job.skip_zero), run_cmd=Cmd.NE_RUN,
            load_cmd=Cmd.NE_LOAD, status=self._net_status, results=results,
            counters=("compute", "beats", "columns", "vectors"))
        self.stats["passes"] += 1
        return ne.NetResult(out=out, columns=totals["columns"],
                            beats=totals["beats"], vectors=totals["vectors"],
                            busy_cycles=totals["compute"])

    def _run_vectors(self, frames, *, load, config_cmd, config, run_cmd, load_cmd, status,
                     results, counters):
        """Vector slots (``frames``: one row of bytes each) through a block that holds a
        program (the network engine, the sparse MAC): the program loaded (``load()``, which
        sends nothing when the device holds it), the block configured, then run frames of
        whole slots; ``results(first vector, n, answer bytes)`` takes each answer. Each frame's
        ``counters`` are the ``status()`` difference around it (a frame retried counts once)
        and ``vectors`` must have advanced by its vectors; a device that lost its program gets
        it again. Returns the counters' totals."""
        vectors = len(frames)
        per_frame = max(1, self.max_payload // frames.shape[1])
        totals = dict.fromkeys(counters, 0)
        done, failures = 0, 0
        while done < vectors:
            try:
                load()
                self.link.configure_block(config_cmd, config)
                before = status()
                n = min(per_frame, max(1, self._chunk * self.nbytes // frames.shape[1]),
                        vectors - done)
                payload = frames[done:done + n].tobytes()
                raw, st = self.link.data(payload, run_cmd)
                after = status()
                if not after["program"]:
                    self._programs[load_cmd] = None
                    raise IntegrityError("the device lost its program (a reset?)")
                if st:
                    flags = [f.name for f in Status if f & st]
                    raise PassError(f"{run_cmd.name} answer reports "
                                    f"{'|'.join(flags) or hex(st)}")
                delta = {k: (after[k] - before[k]) % 2 ** 32 for k in totals}
                if delta["vectors"] != n:
                    raise IntegrityError(f"the device ran {delta['vectors']} vectors of {n}")
                results(done, n, raw)
                for k in totals:
                    totals[k] += delta[k]
                self.stats["bytes_sent"] += len(payload)
                self.stats["bytes_received"] += len(raw)
                self._frame_ok()
                done, failures = done + n, 0
            except self._RETRIED as exc:
                failures = self._failure(exc, failures, f"running vector {done} of {vectors}")
        return totals

    # --- the sparse MAC: layers of hwprune.run ------------------------------------------------
    def _mac_status(self):
        return self.link.status(Cmd.SM_STATUS, SM_STATUS_FIELDS)

    def longest_row(self):
        """Rows (inputs) of a sparse-MAC job this backend runs: the default unit's
        (:data:`~hwprune.contract.sparse_mac.DEFAULT_MAX_K`), though the bridge's unit holds
        shorter ones: a longer row runs in column slices, their sums added on the host (integer
        sums, exact), so :func:`hwprune.run` puts the same layers on the unit as elsewhere."""
        from .contract.sparse_mac import DEFAULT_MAX_K
        return DEFAULT_MAX_K

    @staticmethod
    def _mac_format(job):
        """A job's weight format by name (:func:`hwprune.compress.compress`'s ``fmt``)."""
        return f"{int(job.nm_n)}:{int(job.nm_m)}" if int(job.fmt) else "unstructured"

    @classmethod
    def _mac_dense(cls, job):
        """A job's weights as the dense matrix they encode, and its format's name."""
        from .contract import sparse_mac as sm
        dense = sm.decode_stream(job.value, job.index, job.count, job.end, fmt=int(job.fmt),
                                 n=int(job.nm_n), m=int(job.nm_m), k=np.asarray(job.acts).shape[1])
        return dense, cls._mac_format(job)

    def _mac_job(self, job, weights, acts, fmt):
        """``job``'s format with other ``weights`` (a dense matrix, re-encoded by the same
        compressor, :mod:`hwprune.compress`) and ``acts``."""
        from .compress import compress
        from .contract import sparse_mac as sm
        cw = compress(weights, self.lanes, fmt)
        return cw, sm.SparseMacJob(value=cw.value, index=cw.index, count=cw.count, end=cw.end,
                                   acts=acts, fmt=int(job.fmt), nm_n=int(job.nm_n),
                                   nm_m=int(job.nm_m))

    def _mac_slices(self, job, max_k):
        """``job`` as jobs of at most ``max_k`` inputs a row (the device unit's): column
        slices of the weights and the activations, whose results add up to the job's.
        ``[(job, its weights as a dense matrix or None)]``; the job itself where its rows
        fit."""
        acts = np.asarray(job.acts)
        k = acts.shape[1]
        if k <= max_k:
            return [(job, None)]
        dense, fmt = self._mac_dense(job)
        # max_k is a power of two of at least 2 lanes, so every slice holds whole N:M groups
        return [(self._mac_job(job, dense[:, at:at + max_k], acts[:, at:at + max_k], fmt)[1],
                 dense[:, at:at + max_k]) for at in range(0, k, max_k)]

    def _mac_groups(self, job, max_beats, dense=None):
        """``job`` as jobs of whole rows that each fit the device: weight beats its memory
        holds, results a frame's vector slot holds. ``[(first row, job)]``; the job itself
        where it fits. ``dense``: the job's weights, where the caller has them decoded."""
        from .contract import sparse_mac as sm
        max_rows = self.max_payload // sm.RESULT_BYTES
        rows = sm.job_rows(job)
        if len(job.value) <= max_beats and rows <= max_rows:
            return [(0, job)]
        acts = np.asarray(job.acts)
        if dense is None:
            dense, _ = self._mac_dense(job)
        fmt = self._mac_format(job)
        groups, todo = [], [(0, rows)]
        while todo:
            first, end = todo.pop()
            cw, part = self._mac_job(job, dense[first:end], acts, fmt)
            if cw.beats <= max_beats and end - first <= max_rows:
                groups.append((first, part))
            elif end - first == 1:
                raise ValueError(f"row {first} takes {cw.beats} weight beats, more than the "
                                 f"{max_beats} the device's sparse MAC holds")
            else:
                mid = (first + end) // 2
                todo += [(mid, end), (first, mid)]
        return groups

    def _mac_pass(self, job):
        """Run a :class:`~hwprune.contract.sparse_mac.SparseMacJob` on the device's sparse MAC:
        its weights loaded once (in column slices where its rows are longer than the device
        unit's ``max_k``, each in groups of whole rows where they exceed the device's weight
        memory or a frame's slot), the activation vectors in SM_RUN frames of whole vector
        slots; the slices' results added up; ``cycles`` is the SM_STATUS difference around
        each frame (a frame retried counts once), summed."""
        from .contract import sparse_mac as sm
        params, max_beats = sm.bridge_mac(self.lanes, self.width)
        acts = np.asarray(job.acts)
        longest = self.longest_row()
        if acts.ndim != 2 or acts.shape[1] % self.lanes or acts.shape[1] > longest:
            raise ValueError(f"activation vectors of shape {acts.shape} do not fit the "
                             f"{self.name} backend's sparse MAC (a multiple of {self.lanes} "
                             f"values, at most {longest})")
        vectors = acts.shape[0]
        rows = sm.job_rows(job)
        out = np.zeros((vectors, rows), dtype=np.int64)
        cycles = 0
        for piece, dense in self._mac_slices(job, params["max_k"]):
            for first, part in self._mac_groups(piece, max_beats, dense):
                n_rows = sm.job_rows(part)
                got, c = self._mac_run(part, vectors)
                out[:, first:first + n_rows] += got
                cycles += c
        self.stats["passes"] += 1
        return sm.SparseMacResult(out=out, cycles=cycles)

    def _mac_run(self, job, vectors):
        from .contract import sparse_mac as sm
        packed = sm.program_bytes(job, lanes=self.lanes, width=self.width)
        start = sm.sm_config(job, lanes=self.lanes, new_program=True)
        rows = sm.job_rows(job)
        out = np.zeros((vectors, rows), dtype=np.int64)

        def results(first, n, raw):
            out[first:first + n] = sm.run_results(job, raw, n)
        totals = self._run_vectors(
            sm.run_frame(job), config_cmd=Cmd.SM_CONFIG,
            config=sm.sm_config(job, lanes=self.lanes),
            load=lambda: self._load_program(packed, start, Cmd.SM_CONFIG, Cmd.SM_LOAD,
                                            self._mac_status),
            run_cmd=Cmd.SM_RUN, load_cmd=Cmd.SM_LOAD, status=self._mac_status, results=results,
            counters=("vectors", "cycles"))
        return out, totals["cycles"]

    def _unpack(self, raw):
        return unpack_beats(np.frombuffer(bytes(raw), dtype=np.uint8).reshape(-1, self.nbytes),
                            self.lanes, self.width)

    def _echo_pass(self, cmds, config, packed, unit, expect):
        """A pass of an echoing block that carries nothing from one ``unit`` of beats to the
        next (an N:M beat, a channel): segments of whole units, each CONFIG, a few DATA frames
        and a STATUS that must equal the host's count (``beats``, the checksums and what
        ``expect(answer bytes, beats)`` adds); a failed segment is sent again. Returns the
        answer bytes, (beats, beat_bytes), and the device's cycles summed over segments."""
        config_cmd, data_cmd, status_cmd, fields = cmds
        beats = packed.shape[0]
        answer = np.zeros_like(packed)
        done, cycles, failures = 0, 0, 0
        while done < beats:
            try:
                self.link.configure_block(config_cmd, config)
                units = max(1, self.SEGMENT_FRAMES * self._chunk // unit)
                stop = min(beats, done + units * unit)
                at, in_crc, out_crc, parts = done, 0, 0, []
                while at < stop:
                    n = min(self._chunk, stop - at)
                    sent = packed[at:at + n].tobytes()
                    raw, status = self.link.data(sent, data_cmd)
                    if status:
                        flags = [f.name for f in Status if f & status]
                        raise PassError(f"{data_cmd.name} answer reports "
                                        f"{'|'.join(flags) or hex(status)}")
                    in_crc, out_crc = zlib.crc32(sent, in_crc), zlib.crc32(raw, out_crc)
                    parts.append(raw)
                    at += n
                    self._frame_ok()
                got_bytes = b"".join(parts)
                st = self.link.status(status_cmd, fields)
                want = {"beats": stop - done, "in_crc": in_crc, "out_crc": out_crc,
                        **expect(got_bytes, stop - done)}
                got = {k: st[k] for k in want}
                if got != want:
                    raise IntegrityError(f"{data_cmd.name} pass check failed: device {got}, "
                                         f"host {want}")
                answer[done:stop] = np.frombuffer(got_bytes, dtype=np.uint8).reshape(-1,
                                                                                    self.nbytes)
                cycles += st["cycles"]
                self.stats["segments"] += 1
                self.stats["bytes_sent"] += len(got_bytes)
                self.stats["bytes_received"] += len(got_bytes)
                done, failures = stop, 0
            except self._RETRIED as exc:
                failures = self._failure(exc, failures,
                                         f"with no progress, at beat {done} of {beats}")
        return answer, cycles

    def _threshold_pass(self, job):
        hi = 1 << (self.width - 1)
        tiles, valid = self._check_tiles(job.data, job.lane_valid)
        if not 0 <= int(job.threshold) <= hi:
            raise ValueError(f"threshold must be from 0 to {hi}, not {job.threshold!r}")
        packed = pack_beats(tiles, valid, self.width)
        beats = packed.shape[0]
        ties = valid & (np.abs(tiles.astype(np.int32)) == int(job.threshold))
        if self.store_capacity and beats:
            return self._threshold_run(job, tiles, packed, ties)
        data = np.zeros((beats, self.lanes), dtype=np.int16)
        mask = np.zeros((beats, self.lanes), dtype=bool)
        done, budget, cycles, failures = 0, int(job.tie_budget), 0, 0
        first = True
        while first or done < beats:
            first = False
            try:
                done, budget, spent = self._segment(job.threshold, budget, packed, ties, data,
                                                    mask, done)
                cycles += spent
                failures = 0
            except self._RETRIED as exc:
                failures = self._failure(exc, failures,
                                         f"with no progress, at beat {done} of {beats}")
        self.stats["passes"] += 1
        # The device's own count: engine clocks from each segment's first input beat to its last
        # output beat, summed (the UART paces a board, so this exceeds the stall-free figure).
        return MaskResult(data=data, mask=mask, beats=beats, kept=int(mask.sum()),
                          ties_left=budget, cycles=cycles if beats else 0)

    def _segment(self, threshold, budget, packed, ties, data, mask, start):
        """Configure, send up to SEGMENT_FRAMES frames from beat ``start``, check STATUS.
        Returns the beats done, the tie budget left and the device's cycles of the segment;
        nothing is kept unless the whole segment checks out."""
        self.link.configure(threshold, budget)
        done, left, in_crc, out_crc, sent_bytes = start, budget, 0, 0, 0
        parts = []
        for _ in range(self.SEGMENT_FRAMES):
            if done >= packed.shape[0]:
                break
            n = min(self._chunk, packed.shape[0] - done)
            sent = packed[done:done + n].tobytes()
            raw, status = self.link.data(sent)
            if status:
                flags = [f.name for f in Status if f & status]
                raise PassError(f"TE_DATA answer reports {'|'.join(flags) or hex(status)}")
            in_crc, out_crc = zlib.crc32(sent, in_crc), zlib.crc32(raw, out_crc)
            sent_bytes += len(sent)
            d, mk = unpack_beats(np.frombuffer(raw, dtype=np.uint8).reshape(-1, self.nbytes),
                                 self.lanes, self.width)
            used = int(np.count_nonzero(mk & ties[done:done + n]))
            left -= min(used, left)
            parts.append((done, d, mk))
            done += n
            self._frame_ok()
        st = self.link.status()
        kept = sum(int(mk.sum()) for _, _, mk in parts)
        want = {"beats": done - start, "kept": kept, "in_crc": in_crc, "out_crc": out_crc,
                "ties_left": left}
        got = {k: st[k] for k in want}
        if got != want:
            raise IntegrityError(f"pass check failed: device {got}, host {want}")
        for at, d, mk in parts:
            data[at:at + len(d)], mask[at:at + len(mk)] = d, mk
        self.stats["segments"] += 1
        self.stats["bytes_sent"] += sent_bytes
        self.stats["bytes_received"] += sent_bytes
        return done, left, st["cycles"] if done > start else 0

    def _histogram_pass(self, job):
        """One histogram pass on the device: MH_CONFIG, the beats in frames, MH_SELECT. The
        device counts a frame only once its CRC checked out, so a failed frame is sent again
        on its own: after a failure the host asks MH_STATUS how many beats (and the CRC-32 of
        which bytes) the device has counted, and goes on from there; a count it cannot explain
        starts the pass again (MH_CONFIG empties the bins)."""
        if int(job.width) != self.width:
            raise ValueError(f"job is for width {job.width}, the unit has width {self.width}")
        tiles, valid = self._check_tiles(job.data, job.lane_valid)
        packed = pack_beats(tiles, valid, self.width)
        mag = np.abs(tiles.astype(np.int32))
        if not job.match_en:
            counted = valid
        elif self.width > 8:
            counted = valid & ((mag >> 8) == int(job.match_value))
        else:
            counted = np.zeros_like(valid)
        want_counted = int(np.count_nonzero(counted))
        if self.store_capacity and packed.shape[0]:
            return self._histogram_run(job, packed, want_counted)
        failures, configured, done, crcs, pending = 0, False, 0, [0], 0
        while True:
            try:
                if not configured:
                    self.link.histogram_config(job.shift, job.match_en, job.match_value,
                                               job.keep)
                    configured, done, crcs = True, 0, [0]
                while done < packed.shape[0]:
                    n = pending = min(self._chunk, packed.shape[0] - done)
                    sent = packed[done:done + n].tobytes()
                    status = self.link.histogram_data(sent)
                    if status:
                        flags = [f.name for f in Status if f & status]
                        raise PassError(f"MH_DATA answer reports "
                                        f"{'|'.join(flags) or hex(status)}")
                    done += n
                    crcs.append(zlib.crc32(sent, crcs[-1]))
                    self.stats["bytes_sent"] += len(sent)
                    failures = 0
                    self._frame_ok()
                st = self.link.histogram_select()
                want = {"beats": packed.shape[0], "in_crc": crcs[-1], "counted": want_counted}
                got = {k: st[k] for k in want}
                if got != want:
                    configured = False
                    raise IntegrityError(f"histogram pass check failed: device {got}, host "
                                         f"{want}")
                break
            except self._RETRIED as exc:
                failures = self._failure(exc, failures)
                if configured:
                    configured, done = self._histogram_resume(packed, crcs, done, pending)
        self.stats["passes"] += 1
        return HistogramResult(found_bin=st["found_bin"], above=st["above"], ties=st["ties"],
                               counted=st["counted"], cycles=st["cycles"])

    def _histogram_resume(self, packed, crcs, done, pending):
        """After a failure: where the device's count stands. Returns (still configured, beats
        counted): the frame in flight (``pending`` beats from ``done``) counted or not;
        anything else means start the pass again."""
        try:
            st = self.link.histogram_status()
        except self._RETRIED:
            return False, 0
        if (st["beats"], st["in_crc"]) == (done, crcs[-1]):
            return True, done                 # the frame in flight did not count
        after = zlib.crc32(packed[done:done + pending].tobytes(), crcs[-1])
        if (st["beats"], st["in_crc"]) == (done + pending, after):
            crcs.append(after)                # it did (its answer was lost)
            return True, done + pending
        return False, 0


def _gave_up(exc, why):
    """``exc`` with ``why`` added to its message (same type, so callers catch it as before)."""
    exc.args = (f"{exc} ({why})",)
    return exc


class SerialBackend(UartBackend):
    """A board programmed by ``hwprune synth``, on a serial port (``port``: device or URL)."""

    name = "serial"

    def __init__(self, *, lanes, width, port=None, baudrate=3_000_000, timeout=1.0,
                 transport=None, **options):
        if transport is None:
            if port is None:
                raise ValueError("the serial backend needs port=... (e.g. '/dev/ttyUSB1')")
            transport = SerialTransport(port, baudrate=baudrate, timeout=timeout)
        super().__init__(lanes=lanes, width=width, transport=transport, **options)


class UartSimBackend(UartBackend):
    """The board's UART core verilated; bytes go through a simulated serial line.

    ``blocks``: the names of the blocks behind the simulated bridge (default: every block whose
    adapter fits ``lanes`` and ``width``); ``board``: that board's default bitstream (its
    blocks, its histogram's counter banks, and its clocks per bit unless ``clocks_per_bit``
    says); ``hist_banks``: the histogram's counter banks (0: one a lane)."""

    name = "uart-sim"

    def __init__(self, *, lanes, width, clocks_per_bit=None, gap=0.0, seed=1, idle_cycles=None,
                 blocks=None, board=None, hist_banks=None, **options):
        from .hw.bridge import blocks_bitmap
        from .sim.uart_lib import UartCoreLib
        if isinstance(blocks, str):
            blocks = blocks.split(",")
        if board is not None:
            # A board's default bitstream: its blocks and its UART divisor at 3 Mbit/s.
            from .hw.boards import DEFAULT_BLOCKS, HIST_BANKS, board_clock
            blocks = DEFAULT_BLOCKS[board] if blocks is None else blocks
            hist_banks = HIST_BANKS[board] if hist_banks is None else hist_banks
            _, _, board_cpb = board_clock(board, blocks=blocks)
            if clocks_per_bit is None:
                clocks_per_bit = board_cpb
        clocks_per_bit = 4 if clocks_per_bit is None else clocks_per_bit
        hist_banks = 0 if hist_banks is None else hist_banks
        bitmap = 0 if blocks is None else blocks_bitmap(list(blocks))
        if blocks is not None and not bitmap:
            raise ValueError("blocks must name at least one block")
        self.lib = UartCoreLib(lanes=lanes, width=width, clocks_per_bit=clocks_per_bit,
                               blocks=bitmap, hist_banks=hist_banks)
        self.lib.set_gaps(gap, seed)
        super().__init__(lanes=lanes, width=width,
                         transport=SimTransport(self.lib, idle_cycles=idle_cycles), **options)
