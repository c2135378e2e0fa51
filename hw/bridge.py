"""UART command bridge: the framed host protocol of docs/uart_protocol.md in front of the blocks.

The bridge is small components connected by streams::

    UARTRx -> ReceiveQueue -> FrameParser -> SkidQueue -> Dispatcher -> FrameEncoder -> UARTTx
                                    (header, trailer)  ------^    |  ^    ^
                                                      payload    v  |    | SkidQueue (DATA
                                                           block adapters   answer bytes)

:class:`~hwprune.hw.framing.FrameParser` and :class:`~hwprune.hw.framing.FrameEncoder` know the
framing only; the :class:`Dispatcher` knows the commands: it answers INFO itself and routes each
block's configuration, data and status commands to that block's adapter
(:mod:`hwprune.hw.adapters`); putting a block behind the UART means adding its adapter to
:data:`ADAPTERS`. :class:`CommandBridge` works on byte streams (so cocotb can drive it with random
stalls at the byte level); :class:`UARTCore` puts the UART receiver and transmitter around it and
is what the board top (:mod:`hwprune.hw.boards`) instantiates and what the ``uart-sim`` backend
verilates.

The host sends ``SYNC = 0xA5``, the device answers with ``SYNC = 0x5A`` and ``CMD | 0x80`` (or
``0xFF``, an error frame). Every frame whose header starts gets exactly one answer; a frame that
stops arriving is ended by the idle timeout.

Generated Verilog ports of ``uart_core`` (the contract with ``sim/shim/uart_core.cpp``)::

    clk, rst, rx, tx, busy, error
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract import protocol
from ..contract.protocol import INFO_FIELDS, INFO_PARAMS, MAX_PAYLOAD, PROTOCOL_VERSION, STATUS_FIELDS, Status
from .adapters import (ChannelNormsAdapter, MagnitudeHistogramAdapter, NetEngineAdapter,
                       NMSelectorAdapter, SparseMacAdapter, ThresholdEngineAdapter)
from .framing import (AnswerFrame, Cmd, ErrorCode, FrameEncoder, FrameParser, Header,
                      PayloadByte, ReceiveQueue, SkidQueue, Trailer, offer, one_hot)
from .store import WeightStore
from .uart import RxByte, UARTRx, UARTTx

__all__ = ["ADAPTERS", "Cmd", "ErrorCode", "Dispatcher", "CommandBridge", "UARTCore",
           "bridge_adapters", "blocks_bitmap"]

#: The block adapters a bridge can hold, in INFO order.
ADAPTERS = (ThresholdEngineAdapter, MagnitudeHistogramAdapter, NMSelectorAdapter,
            ChannelNormsAdapter, SparseMacAdapter, WeightStore, NetEngineAdapter)

#: The error counters every STATUS answer carries (saturating, since reset).
ERROR_COUNTERS = tuple(name for name, _ in protocol.ERROR_FIELDS)


def blocks_bitmap(names):
    """The INFO ``blocks`` bitmap of block names (``Block.bridge_bit``); ValueError for a name
    no adapter holds."""
    known = {a.block.name: a.block.bridge_bit for a in ADAPTERS}
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"no bridge adapter for {bad}; the bridge can hold {sorted(known)}")
    return sum(1 << known[n] for n in set(names))


def bridge_adapters(lanes, width, blocks=0):
    """The adapters of a bridge: those in the ``blocks`` bitmap (0: every one that fits
    ``lanes`` and ``width``, except those only a bitstream naming them holds: the sparse MAC,
    the network engine). ValueError naming a chosen block that does not fit."""
    if not blocks:
        return [a for a in ADAPTERS if a.fits(lanes, width) and getattr(a, "default", True)]
    chosen = [a for a in ADAPTERS if blocks >> a.block.bridge_bit & 1]
    unknown = blocks & ~sum(1 << a.block.bridge_bit for a in ADAPTERS)
    if unknown:
        raise ValueError(f"blocks bitmap {blocks:#x} names bits {unknown:#x} that no adapter "
                         f"holds")
    bad = [a.block.name for a in chosen if not a.fits(lanes, width)]
    if bad:
        raise ValueError(f"{', '.join(bad)} cannot sit behind the bridge at lanes={lanes}, "
                         f"width={width} (hwprune info shows each block's domain)")
    return chosen


def _fields_len(fields):
    return sum(n for _, n in fields)


def _bytes(value, n):
    """``value`` as exactly ``n`` bytes (zero-extended or cut)."""
    value = Value.cast(value)
    return Cat(value, C(0, 8 * n))[:8 * n]


class Dispatcher(wiring.Component):
    """The commands: takes parsed frames, runs them on the adapters, composes the answers.

    Parameters
    ----------
    adapters : sequence of adapter components
        Each has class attributes ``block`` (its description), ``CONFIG`` / ``DATA`` /
        ``STATUS`` (its command codes), ``config_len`` and ``beat_bytes``, and ports
        ``config`` + ``load`` (configure and start a pass), ``i_bytes`` / ``o_bytes`` (a DATA
        payload in, the answer's bytes out) and the counters its STATUS answer reports.

    Attributes
    ----------
    i_header, accept, i_payload, i_trailer
        The :class:`~hwprune.hw.framing.FrameParser`'s side.
    o_frame, o_small, o_data, o_status
        The :class:`~hwprune.hw.framing.FrameEncoder`'s side.
    framing, overflow : In(1)
        Strobes to count: a framing error outside a frame, a lost received byte.
    busy, error : Out(1)
        A command is being handled; some error was counted since reset.
    """

    i_header: In(stream.Signature(Header))
    accept: Out(1)
    i_payload: In(stream.Signature(PayloadByte))
    i_trailer: In(stream.Signature(Trailer))
    o_frame: Out(stream.Signature(AnswerFrame))
    o_small: Out(stream.Signature(8))
    o_data: Out(stream.Signature(8))
    o_status: Out(stream.Signature(8))
    framing: In(1)
    overflow: In(1)
    busy: Out(1)
    error: Out(1)

    def __init__(self, adapters, *, lanes, width):
        self.adapters = list(adapters)
        if not self.adapters:
            raise ValueError("a bridge needs at least one block")
        self.lanes, self.width = lanes, width
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        adapters = self.adapters
        for k, adapter in enumerate(adapters):
            m.submodules[f"adapter{k}"] = adapter

        # --- error counters ---------------------------------------------------------------
        errors = {name: Signal(8, name=name) for name in ERROR_COUNTERS}

        def bump(name):
            c = errors[name]
            return c.eq(c + (c != 0xFF))
        with m.If(self.overflow):
            m.d.sync += bump("overflows")
        with m.If(self.framing):
            m.d.sync += bump("framing_errors")
        m.d.comb += self.error.eq(Cat(*errors.values()).any())

        # --- the answer's short payload (INFO, STATUS, CONFIG, ERROR) --------------------------
        # Read out byte by byte from its fields where they live (a snapshot register of the
        # longest answer and its load multiplexers took ~500 logic cells on the iCE40). The
        # fields hold still while the answer goes out: a block starts nothing new before the
        # encoder is idle again; the ERROR answer's code, which the next header overwrites, is
        # the one thing copied. Sources are added below (`small_source`) as the answers are.
        small_len = max(*(_fields_len(a.status_fields) for a in adapters),
                        *(_fields_len(a.finish_fields) for a in adapters),
                        _fields_len(INFO_FIELDS), 2)
        small_sources = []        # per source, its bytes (8-bit values)
        small_src = Signal(8)     # the answer's source (unused high bits are constants)
        small_pos = Signal(range(small_len + 1))

        def small_source(value, nbytes):
            """The source number of an answer made of ``value``'s first ``nbytes`` bytes."""
            v = _bytes(value, nbytes)
            small_sources.append([v[8 * i:8 * i + 8] for i in range(nbytes)])
            return len(small_sources) - 1

        # The byte at `small_pos` is read in two registered steps (timing: the multiplexer over
        # every answer's fields ends in registers, not in the encoder's): each source's byte at
        # `small_pos`, then the one of `small_src`; valid from the second clock after
        # `small_pos` or the source last changed.
        small_byte = Signal(8)
        small_age = Signal(range(3))

        def load_small(source):
            return [small_src.eq(source), small_pos.eq(0), small_age.eq(0)]
        m.d.comb += [self.o_small.valid.eq(small_age == 2), self.o_small.payload.eq(small_byte)]
        with m.If(small_age != 2):
            m.d.sync += small_age.eq(small_age + 1)
        with m.If(self.o_small.valid & self.o_small.ready):
            m.d.sync += [small_pos.eq(small_pos + 1), small_age.eq(0)]
        answer = Signal(AnswerFrame)
        m.d.comb += self.o_frame.payload.eq(answer)
        status_seen = Signal()       # STATUS_WAIT, DATA_END: the adapter was finished a clock ago
        m.d.sync += status_seen.eq(0)
        idle = Signal()      # the encoder is idle: a new answer may be loaded
        m.d.comb += idle.eq(self.o_frame.ready)

        # --- the block a DATA payload goes to, and its answer bytes --------------------------
        active = Signal(range(max(len(adapters), 2)))
        # Per adapter, a register: DATA payload bytes go to it (timing: the payload handshake
        # decodes neither the state nor `active`). Set as the DATA state begins, cleared when
        # the frame's trailer is taken.
        routes = [Signal(name=f"route{k}") for k in range(len(adapters))]
        # The frame's end, a registered strobe to the active adapter (timing): high for the one
        # clock of DATA_ENDING, so DATA_END reads `finished` after the adapter has seen it.
        ends = [Signal(name=f"end{k}") for k in range(len(adapters))]
        end_ok = Signal()
        for k, adapter in enumerate(adapters):
            m.d.comb += [adapter.i_bytes.payload.eq(self.i_payload.payload.data),
                         adapter.i_bytes.valid.eq(routes[k] & self.i_payload.valid),
                         adapter.frame_end.eq(ends[k]), adapter.frame_ok.eq(end_ok)]
            with m.If(routes[k]):
                m.d.comb += self.i_payload.ready.eq(adapter.i_bytes.ready)
            with m.If(active == k):
                m.d.comb += [self.o_data.valid.eq(adapter.o_bytes.valid),
                             self.o_data.payload.eq(adapter.o_bytes.payload),
                             adapter.o_bytes.ready.eq(self.o_data.ready)]

        info = {"version": C(PROTOCOL_VERSION, 8),
                "blocks": C(sum(1 << a.block.bridge_bit for a in adapters), 8),
                "lanes": C(self.lanes, 8), "width": C(self.width, 8),
                "max_payload": C(MAX_PAYLOAD, 16),
                **{field: C(next((a.unit.params[param] for a in adapters
                                  if a.block.name == block), 0), 8 * size)
                   for (field, size) in INFO_FIELDS if field in INFO_PARAMS
                   for block, param in [INFO_PARAMS[field]]}}

        cmd = Signal(8)
        length = Signal(16)
        code = Signal(ErrorCode)     # the ERROR answer's code
        code_cmd = Signal(8)         # and the command byte it names
        error_answer = Signal(16)    # both, held while the ERROR answer goes out
        zero_src = small_source(C(0, 8), 1)
        info_src = small_source(Cat(*(info[n] for n, _ in INFO_FIELDS)),
                                _fields_len(INFO_FIELDS))
        error_src = small_source(error_answer, 2)
        left = Signal(signed(18))
        diff = Signal(signed(18))
        config = Signal(8 * max(protocol.RUN_LEN, *(a.config_len for a in adapters)))
        status = Signal(8)           # the DATA answer's status byte
        trailer = Signal(Trailer)
        m.d.comb += self.o_status.payload.eq(status)

        def refuse(error):
            # Answer ERROR once the parser has dropped the frame's payload and CRC.
            return [code.eq(error), code_cmd.eq(cmd)]

        # The command decoded once, into flags, when its header arrives (timing: the later states
        # test one flip-flop, not an 8-bit compare per adapter and kind).
        is_info = Signal()
        # Likewise the length checks (timing: `accept` follows a flag, not a 16-bit compare).
        len_zero, len_big, len_run = Signal(), Signal(), Signal()
        len_config = [Signal(name=f"len_config{k}") for k in range(len(adapters))]
        kinds = ("STATUS", "FINISH", "CONFIG", "DATA", "RUN", "DENSE")
        # A DENSE frame (the weight store's) is a DATA frame of beats without their lane
        # bitmap (every lane valid): its unit is the beat's weight bytes.
        dense = Signal()
        # The weight store, if the bridge holds one: RUN commands replay its beats into a block.
        store = next((a for a in adapters if isinstance(a, WeightStore)), None)
        # A RUN command exists only where there is a store to replay (elsewhere its code is
        # an unknown command).
        def runs(adapter):
            return store is not None and getattr(adapter, "RUN", None) is not None
        # Per adapter, a register: it takes the store's bytes and answers a RUN (timing: its
        # payload handshake decodes no state).
        run_flags = {k: Signal(name=f"running{k}") for k, a in enumerate(adapters) if runs(a)}
        # A RUN's first beat and beat count (u32 each on the wire; a store holds fewer than
        # 2**16 beats, so anything above is refused), decided once in CHECK into `run_bad`.
        run_first, run_count = config[-64:-48], config[-32:-16]
        run_high = Signal()
        m.d.comb += run_high.eq(config[-48:-32].any() | config[-16:].any())
        run_bad = Signal()
        run_answer = Signal(17)     # the RUN answer's length: its beats' bytes and the status
        # The RUN answers that carry bytes (the masking pass's) all have the same bytes a beat:
        # a multiplication by a constant. The length and the run's end are registered from the
        # configuration (timing: CHECK compares registers).
        per_beat = {getattr(a, "run_bytes", 0) for a in adapters} - {0}
        assert len(per_beat) <= 1, per_beat
        carries = Array(C(getattr(a, "run_bytes", 0) != 0, 1) for a in adapters)[active]
        length_k = Signal(17)
        run_end = Signal(17)
        m.d.sync += [length_k.eq(Mux(carries, run_count * max(per_beat, default=0), 0) + 1),
                     run_end.eq(run_first + run_count)]
        held = store.beats[:16] if store is not None else C(0, 16)   # the store's beats
        for adapter in adapters:
            if getattr(adapter, "DENSE", None) is not None:
                m.d.comb += adapter.dense.eq(dense)
        for k, flag in run_flags.items():
            adapter = adapters[k]
            m.d.comb += [adapter.run.eq(flag),
                         adapter.r_bytes.valid.eq(store.r_bytes.valid & flag),
                         adapter.r_bytes.payload.eq(store.r_bytes.payload)]
            with m.If(flag):
                m.d.comb += store.r_bytes.ready.eq(adapter.r_bytes.ready)
        is_ = {(k, kind): Signal(name=f"is_{kind.lower()}{k}")
               for k in range(len(adapters)) for kind in kinds}

        # A CONFIG's load strobe, registered (timing: the decision's priority chain does not
        # reach into the adapters): the adapter loads `config` the clock after EXECUTE.
        loads = [Signal(name=f"load{k}") for k in range(len(adapters))]
        m.d.sync += [load.eq(0) for load in loads]
        for k, adapter in enumerate(adapters):
            if adapter.config_len:
                m.d.comb += adapter.config.eq(config[-8 * adapter.config_len:])
            m.d.comb += adapter.load.eq(loads[k])

        # DECIDE takes the header a clock after deciding, from these registers (timing: the
        # parser's next state does not follow the decision's priority chain).
        take_header, accept_header = Signal(), Signal()
        m.d.sync += [take_header.eq(0), accept_header.eq(0)]
        with m.If(take_header):
            m.d.comb += [self.i_header.ready.eq(1), self.accept.eq(accept_header)]
        with m.FSM(name="dispatch") as fsm:
            with m.State("IDLE"):
                with m.If(self.i_header.valid):
                    h = self.i_header.payload
                    m.d.sync += [cmd.eq(h.cmd), length.eq(h.length), code.eq(h.error),
                                 code_cmd.eq(h.cmd), is_info.eq(h.cmd == Cmd.INFO),
                                 len_zero.eq(h.length == 0),
                                 len_big.eq(h.length > MAX_PAYLOAD),
                                 len_run.eq(h.length == protocol.RUN_LEN),
                                 *(len_config[k].eq(h.length == a.config_len)
                                   for k, a in enumerate(adapters))]
                    for k, adapter in enumerate(adapters):
                        for kind in kinds:
                            code_k = (getattr(adapter, kind, None)
                                      if kind != "RUN" or runs(adapter) else None)
                            m.d.sync += is_[k, kind].eq(0 if code_k is None else h.cmd == code_k)
                    m.next = "DECIDE"
            with m.State("DECIDE"):
                # The header waits on i_header until the decision takes it (with ``accept``).
                with m.If(code != ErrorCode.NONE):
                    # The header failed: answer at once, naming no command.
                    m.d.sync += take_header.eq(1)
                    m.d.sync += code_cmd.eq(0)
                    for error, counter in ((ErrorCode.BAD_HEADER, "header_errors"),
                                           (ErrorCode.FRAMING, "framing_errors"),
                                           (ErrorCode.TIMEOUT, "timeouts")):
                        with m.If(code == error):
                            m.d.sync += bump(counter)
                    m.next = "ERROR"
                with m.Elif(is_info):
                    m.next = "SHORT"
                for k, adapter in enumerate(adapters):
                    with m.Elif(is_[k, "STATUS"] | is_[k, "FINISH"]):
                        m.d.sync += active.eq(k)
                        m.next = "SHORT"
                    with m.Elif(is_[k, "CONFIG"] | is_[k, "RUN"]):
                        # Both carry a fixed payload, read into `config` (a RUN's: first beat
                        # and beat count).
                        m.d.sync += active.eq(k)
                        with m.If(Mux(is_[k, "RUN"], len_run, len_config[k])):
                            m.d.sync += [take_header.eq(1), accept_header.eq(1)]
                            m.next = "CONFIG"
                        with m.Else():
                            m.d.sync += refuse(ErrorCode.BAD_LENGTH)
                            m.next = "REFUSE"
                    with m.Elif(is_[k, "DATA"] | is_[k, "DENSE"]):
                        m.d.sync += [active.eq(k), left.eq(length), dense.eq(is_[k, "DENSE"])]
                        with m.If(len_zero | len_big):
                            m.d.sync += refuse(ErrorCode.BAD_LENGTH)
                            m.next = "REFUSE"
                        with m.Else():
                            m.next = "DIVIDE"
                with m.Else():
                    m.d.sync += refuse(ErrorCode.UNKNOWN_CMD)
                    m.next = "REFUSE"
            with m.State("SHORT"):
                # INFO and STATUS carry no payload.
                with m.If(len_zero):
                    m.d.comb += [self.i_header.ready.eq(1), self.accept.eq(1)]
                    m.next = "TRAILER"
                with m.Else():
                    m.d.sync += refuse(ErrorCode.BAD_LENGTH)
                    m.next = "REFUSE"
            with m.State("REFUSE"):
                m.d.comb += self.i_header.ready.eq(1)
                m.next = "DROPPED"
            with m.State("DROPPED"):
                m.d.comb += self.i_trailer.ready.eq(1)
                with m.If(self.i_trailer.valid):
                    with m.If(self.i_trailer.payload.timeout):
                        m.d.sync += bump("timeouts")
                    m.next = "ERROR"
            with m.State("DIVIDE"):
                # LEN must be whole beats: subtract the beat size until it goes negative, two
                # clocks a step (timing: the subtraction, then the decision on its sign).
                unit = Array(C(a.beat_bytes, 16) for a in adapters)[active]
                data_unit = Array(C(getattr(a, "data_bytes", a.beat_bytes), 16)
                                  for a in adapters)[active]
                m.d.sync += diff.eq(left - Mux(dense, data_unit, unit))
                m.next = "DIVIDE_CHECK"
            with m.State("DIVIDE_CHECK"):
                with m.If(diff >= 0):
                    m.d.sync += left.eq(diff)
                    m.next = "DIVIDE"
                with m.Elif(left != 0):
                    m.d.sync += refuse(ErrorCode.BAD_LENGTH)
                    m.next = "REFUSE"
                with m.Else():
                    # An echoing block answers its output beats and the status byte; the others
                    # the status byte alone.
                    # (a DENSE frame's answer may differ: the network engine's NE_LOAD)
                    echo = Array(C(int(a.echo), 1) for a in adapters)[active]
                    dense_echo = Array(C(int(getattr(a, "dense_echo", a.echo)), 1)
                                       for a in adapters)[active]
                    m.d.sync += [answer.cmd.eq(cmd | 0x80),
                                 answer.length.eq(Mux(Mux(dense, dense_echo, echo), length + 1,
                                                      1)),
                                 answer.small.eq(0), status.eq(0)]
                    m.next = "DATA_START"
            if store is not None:
                with m.State("RUN_START"):
                    # The answer starts, then the store replays the beats into the block.
                    m.d.comb += self.o_frame.valid.eq(1)
                    with m.If(self.o_frame.ready):
                        m.d.sync += [flag.eq(active == k) for k, flag in run_flags.items()]
                        m.d.comb += [store.replay_start.eq(1),
                                     store.replay_first.eq(run_first),
                                     store.replay_count.eq(run_count)]
                        m.next = "RUN"
                with m.State("RUN"):
                    with m.If(store.replay_done & Array(a.finished for a in adapters)[active]):
                        m.next = "DATA_END"
            with m.State("DATA_START"):
                # The answer starts before the payload flows: the block's output streams out
                # while its input streams in.
                m.d.sync += [flag.eq(0) for flag in run_flags.values()]
                m.d.comb += self.o_frame.valid.eq(1)
                with m.If(self.o_frame.ready):
                    m.d.comb += [self.i_header.ready.eq(1), self.accept.eq(1)]
                    m.d.sync += [route.eq(active == k) for k, route in enumerate(routes)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.i_trailer.ready.eq(1)
                with m.If(self.i_trailer.valid):
                    t = self.i_trailer.payload
                    m.d.sync += [*(route.eq(0) for route in routes),
                                 *(end.eq(active == k) for k, end in enumerate(ends)),
                                 end_ok.eq(t.crc_ok & ~t.timeout & ~t.ferr)]
                    m.d.sync += status.eq(Mux(t.timeout, Status.TIMEOUT, 0)
                                          | Mux(t.ferr, Status.FRAMING, 0)
                                          | Mux(t.crc_ok, 0, Status.BAD_CRC))
                    with m.If(t.timeout):
                        m.d.sync += bump("timeouts")
                    with m.If(t.ferr):
                        m.d.sync += bump("framing_errors")
                    with m.If(~t.crc_ok):
                        m.d.sync += bump("crc_errors")
                    m.next = "DATA_ENDING"
            with m.State("DATA_ENDING"):
                m.d.sync += [end.eq(0) for end in ends]
                m.next = "DATA_END"
            with m.State("DATA_END"):
                # The status byte ends the answer, once the block has taken in the frame (the
                # histogram counts a frame from its buffer after the CRC checked out); its
                # `finished` registered first, as STATUS_WAIT's (timing).
                m.d.sync += status_seen.eq(Array(a.finished for a in adapters)[active])
                with m.If(status_seen):
                    offer(m, self.o_status, "IDLE")
            with m.State("CONFIG"):
                m.d.comb += self.i_payload.ready.eq(1)
                with m.If(self.i_payload.valid):
                    m.d.sync += config.eq(Cat(config[8:], self.i_payload.payload.data))
                m.d.comb += self.i_trailer.ready.eq(1)
                with m.If(self.i_trailer.valid):
                    m.d.sync += trailer.eq(self.i_trailer.payload)
                    m.next = "CHECK"
            with m.State("TRAILER"):
                m.d.comb += self.i_trailer.ready.eq(1)
                with m.If(self.i_trailer.valid):
                    m.d.sync += trailer.eq(self.i_trailer.payload)
                    m.next = "CHECK"
            with m.State("CHECK"):
                # The RUN answers that carry bytes (the masking pass's) all have the same bytes
                # a beat: a multiplication by a constant.
                # (their sums are registered every clock from `config`, which stops changing
                # at least two clocks before CHECK: the trailer waits for the payload stage)
                m.d.sync += [run_answer.eq(length_k),
                             run_bad.eq(run_high | (run_end > held)
                                        | (length_k > MAX_PAYLOAD + 1))]
                with m.If(trailer.timeout):
                    m.d.sync += [bump("timeouts"), refuse(ErrorCode.TIMEOUT)]
                    m.next = "ERROR"
                with m.Elif(trailer.ferr):
                    m.d.sync += [bump("framing_errors"), refuse(ErrorCode.FRAMING)]
                    m.next = "ERROR"
                with m.Elif(~trailer.crc_ok):
                    m.d.sync += [bump("crc_errors"), refuse(ErrorCode.BAD_CRC)]
                    m.next = "ERROR"
                with m.Else():
                    m.next = "EXECUTE"
            with m.State("EXECUTE"):
                # Answers are loaded only while the encoder is idle: it reads `small_src` out.
                with m.If(idle):
                    m.d.sync += [answer.cmd.eq(cmd | 0x80), answer.small.eq(1)]
                    with m.If(is_info):
                        m.d.sync += [*load_small(info_src),
                                     answer.length.eq(_fields_len(INFO_FIELDS))]
                    for k, adapter in enumerate(adapters):
                        with m.Elif(is_[k, "STATUS"] | is_[k, "FINISH"]):
                            # A finishing command (the histogram's select walk) strobes
                            # `finish`; both answer once the adapter is finished.
                            if adapter.FINISH is not None:
                                m.d.comb += adapter.finish.eq(is_[k, "FINISH"])
                            m.next = "STATUS_WAIT"
                        with m.Elif(is_[k, "CONFIG"]):
                            m.d.sync += [loads[k].eq(1),
                                         *load_small(zero_src), answer.length.eq(1),
                                         *(flag.eq(0) for flag in run_flags.values())]
                        if runs(adapter):
                            with m.Elif(is_[k, "RUN"]):
                                # Beats the store does not hold are refused.
                                with m.If(run_bad):
                                    m.d.sync += refuse(ErrorCode.BAD_LENGTH)
                                with m.Else():
                                    m.d.sync += [answer.small.eq(0), status.eq(0),
                                                 answer.length.eq(run_answer)]
                    with m.If(is_info):
                        m.next = "RESPOND"
                    for k, adapter in enumerate(adapters):
                        with m.Elif(is_[k, "CONFIG"]):
                            m.next = "RESPOND"
                        if runs(adapter):
                            with m.Elif(is_[k, "RUN"]):
                                with m.If(run_bad):
                                    m.next = "ERROR"
                                with m.Else():
                                    m.next = "RUN_START"
            with m.State("STATUS_WAIT"):
                # The addressed adapter's `finished`, seen here, is registered before the
                # answer is loaded (timing: an adapter's state does not reach the answer's
                # registers in one clock); `finished` stays high once it is.
                waits = [is_[k, kind] & adapter.finished for k, adapter in enumerate(adapters)
                         for kind in ("STATUS", "FINISH") if getattr(adapter, kind) is not None]
                m.d.sync += status_seen.eq(Cat(*waits).any())
                for k, adapter in enumerate(adapters):
                    for kind, fields in (("STATUS", adapter.status_fields),
                                         ("FINISH", adapter.finish_fields)):
                        if getattr(adapter, kind) is None:
                            continue
                        values = {**errors, **{n: getattr(adapter, n) for n, _ in fields
                                               if n in adapter.signature.members}}
                        with m.If(is_[k, kind] & status_seen):
                            src = small_source(Cat(*(_bytes(values[n], w)
                                                     for n, w in fields)),
                                               _fields_len(fields))
                            m.d.sync += [*load_small(src),
                                         answer.length.eq(_fields_len(fields))]
                            m.next = "RESPOND"
            with m.State("ERROR"):
                with m.If(idle):
                    m.d.sync += [answer.cmd.eq(Cmd.ERROR), answer.small.eq(1),
                                 answer.length.eq(2), error_answer.eq(Cat(code, code_cmd)),
                                 *load_small(error_src)]
                    m.next = "RESPOND"
            with m.State("RESPOND"):
                offer(m, self.o_frame, "IDLE")
        picks = []
        for k, source in enumerate(small_sources):
            if len(source) == 1:
                picks.append(source[0])
            else:
                pick = Signal(8, name=f"small_pick{k}")
                m.d.sync += pick.eq(Array(source)[small_pos])
                picks.append(pick)
        with m.Switch(small_src):
            for k, pick in enumerate(picks):
                with m.Case(k):
                    m.d.sync += small_byte.eq(pick)
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        one_hot(fsm)
        return m


class CommandBridge(wiring.Component):
    """Frame parser, dispatcher with its block adapters, and frame encoder on byte streams.

    Parameters
    ----------
    lanes, width : int
        The blocks' parameters.
    timeout : int
        Clock cycles without a received byte after which a partly received frame is ended.
    fifo_depth : int
        Receive FIFO depth (bytes): the host's bytes wait here while a block or the answer is
        behind.

    Attributes
    ----------
    i_rx : In(stream.Signature(RxByte))
    o_tx : Out(stream.Signature(8))
    overflow : In(1)
        Strobe from the UART receiver: a byte was lost (counted in TE_STATUS).
    busy, error : Out(1)
        A frame is being handled; some error was counted since reset (status LEDs).
    """

    i_rx: In(stream.Signature(RxByte))
    o_tx: Out(stream.Signature(8))
    overflow: In(1)
    busy: Out(1)
    error: Out(1)

    def __init__(self, *, lanes, width, timeout, fifo_depth=256, blocks=0, hist_banks=0):
        protocol.COMMAND_BRIDGE.check(lanes=lanes, width=width, timeout=timeout,
                                      fifo_depth=fifo_depth, blocks=blocks, hist_banks=hist_banks)
        self._lanes, self._width = lanes, width
        self._timeout, self._fifo_depth = timeout, fifo_depth
        #: the bridge's parameters that some adapter takes (an adapter's ``bridge_params``)
        self._options = {"hist_banks": hist_banks}
        #: the adapters of the blocks this bridge holds
        self.adapters = bridge_adapters(lanes, width, blocks)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx_queue = rxq = ReceiveQueue(depth=self._fifo_depth)
        m.submodules.parser = parser = FrameParser(timeout=self._timeout)
        m.submodules.dispatcher = dispatch = Dispatcher(
            [adapter(lanes=self._lanes, width=self._width,
                     **{k: self._options[k] for k in getattr(adapter, "bridge_params", ())})
             for adapter in self.adapters],
            lanes=self._lanes, width=self._width)
        m.submodules.encoder = encoder = FrameEncoder()

        wiring.connect(m, wiring.flipped(self.i_rx), rxq.i_rx)
        wiring.connect(m, rxq.o_bytes, parser.i_bytes)
        wiring.connect(m, parser.o_header, dispatch.i_header)
        # The payload reaches the blocks through a register stage in both directions (timing:
        # on the iCE40 the receive queue's handshake ran through the parser and the dispatcher
        # into the weight store's write logic). The trailer waits until the stage has given its
        # last byte to the block.
        m.submodules.payload = payload = SkidQueue(PayloadByte)
        wiring.connect(m, parser.o_payload, payload.i)
        wiring.connect(m, payload.o, dispatch.i_payload)
        m.d.comb += [dispatch.i_trailer.payload.eq(parser.o_trailer.payload),
                     dispatch.i_trailer.valid.eq(parser.o_trailer.valid & payload.empty),
                     parser.o_trailer.ready.eq(dispatch.i_trailer.ready & payload.empty)]
        wiring.connect(m, dispatch.o_frame, encoder.i_frame)
        wiring.connect(m, dispatch.o_small, encoder.i_small)
        # The DATA answer's bytes and its status byte reach the encoder through register
        # stages (timing: the active adapter's output handshake and its `finished` do not run
        # through the dispatcher's choice into the framer's byte counters).
        m.submodules.answer = answer = SkidQueue(8)
        wiring.connect(m, dispatch.o_data, answer.i)
        wiring.connect(m, answer.o, encoder.i_data)
        m.submodules.answer_status = answer_status = SkidQueue(8)
        wiring.connect(m, dispatch.o_status, answer_status.i)
        wiring.connect(m, answer_status.o, encoder.i_status)
        wiring.connect(m, encoder.o_tx, wiring.flipped(self.o_tx))
        m.d.comb += [
            parser.accept.eq(dispatch.accept),
            dispatch.framing.eq(parser.framing),
            dispatch.overflow.eq(self.overflow | rxq.dropped),
            self.busy.eq(parser.busy | dispatch.busy | encoder.busy),
            self.error.eq(dispatch.error),
        ]
        return m


class UARTCore(wiring.Component):
    """UART receiver + :class:`CommandBridge` + UART transmitter: the part of the board top that
    does not depend on the board (no PLL, no pins).

    Attributes
    ----------
    rx : In(1), tx : Out(1)
        The serial lines (idle high).
    busy, error : Out(1)
        Status LEDs (see :class:`CommandBridge`).
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    busy: Out(1)
    error: Out(1)

    def __init__(self, *, lanes, width, clocks_per_bit, timeout, fifo_depth=256, blocks=0,
                 hist_banks=0):
        protocol.UART_CORE.check(lanes=lanes, width=width, clocks_per_bit=clocks_per_bit,
                                 timeout=timeout, fifo_depth=fifo_depth, blocks=blocks,
                                 hist_banks=hist_banks)
        self._params = dict(lanes=lanes, width=width, timeout=timeout, fifo_depth=fifo_depth,
                            blocks=blocks, hist_banks=hist_banks)
        self._cpb = clocks_per_bit
        self.bridge = CommandBridge(**self._params)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = rx = UARTRx(clocks_per_bit=self._cpb)
        m.submodules.uart_tx = tx = UARTTx(clocks_per_bit=self._cpb)
        m.submodules.bridge = bridge = self.bridge
        wiring.connect(m, rx.o_stream, bridge.i_rx)
        wiring.connect(m, bridge.o_tx, tx.i_stream)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx), bridge.overflow.eq(rx.overflow),
                     self.busy.eq(bridge.busy), self.error.eq(bridge.error)]
        return m
