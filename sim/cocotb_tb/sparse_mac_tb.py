"""cocotb 2.x test bench of the sparse MAC unit (run by pytest through ``cocotb_tools.runner``).

Layering: two :class:`StreamSource` drivers (compressed weight beats, activation beats) and a
:class:`StreamSink` monitor of the results, all with random pauses; :class:`SparseMacBench` wires
them, configures the format, and scores the results in order against the one golden model
(:func:`hwprune.contract.sparse_mac.run`) and the dense integer product of the layer.

The ``backend_pass`` test is not a check: it is how :class:`hwprune.backends.CocotbBackend` runs
the RTL for the host driver. It reads a job folder named by ``HWPRUNE_COCOTB_JOB``.
"""


import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from hwprune.compress import compress, nm_mask
from hwprune.contract import SparseMacResult
from hwprune.contract.sparse_mac import make_job, run as golden_run
from hwprune.contract.sparse_mac import INDEX_WIDTH
from hwprune.sim.cocotb_tb.streams import StreamSink, StreamSource, no_pauses, random_pauses


def unit_shape(dut):
    """(lanes, width, act_width, acc_width) of the unit, read off its port widths."""
    w_bits = len(dut.w_stream__payload)
    a_bits = len(dut.a_stream__payload) - 1
    for lanes in (4, 8, 16, 32, 64):
        rest = w_bits - 1 - lanes - lanes.bit_length() - lanes * INDEX_WIDTH
        if rest > 0 and rest % lanes == 0 and a_bits % lanes == 0 and \
                rest // lanes in (4, 8, 16) and a_bits // lanes in (4, 8, 16):
            acc_width = (len(dut.o_stream__payload) - lanes) // lanes
            return lanes, rest // lanes, a_bits // lanes, acc_width
    raise AssertionError("cannot read the unit's parameters off its ports")


def pack_weight_beats(job, width):
    """Weight payload integers: values, indices, count, the end bitmap, final."""
    lanes = job.value.shape[1]
    vmask, count_bits = (1 << width) - 1, lanes.bit_length()
    base_index = lanes * width
    base_count = base_index + lanes * INDEX_WIDTH
    base_end = base_count + count_bits
    beats = []
    n = len(job.count)
    for b, (vals, idx, ends) in enumerate(zip(job.value.tolist(), job.index.tolist(),
                                              np.asarray(job.end, dtype=bool).tolist())):
        word = 0
        for s in range(lanes):
            word |= (vals[s] & vmask) << (s * width)
            word |= idx[s] << (base_index + s * INDEX_WIDTH)
            word |= int(ends[s]) << (base_end + s)
        word |= int(job.count[b]) << base_count
        word |= int(b == n - 1) << (base_end + lanes)
        beats.append(word)
    return beats


def unpack_results(beats, lanes, acc_width):
    """Result payload integers -> the results they carry, in order."""
    sign, mask = 1 << (acc_width - 1), (1 << acc_width) - 1
    out = []
    for word in beats:
        valid = word >> (lanes * acc_width)
        out.extend((((word >> (s * acc_width)) & mask) ^ sign) - sign
                   for s in range(lanes) if (valid >> s) & 1)
    return out


def pack_act_beats(acts, lanes, act_width):
    amask = (1 << act_width) - 1
    beats = []
    for vector in np.asarray(acts).tolist():
        chunks = [vector[i:i + lanes] for i in range(0, len(vector), lanes)]
        for c, chunk in enumerate(chunks):
            word = 0
            for s, v in enumerate(chunk):
                word |= (v & amask) << (s * act_width)
            beats.append(word | (int(c == len(chunks) - 1) << (lanes * act_width)))
    return beats


class SparseMacBench:
    """Drives one unit: configure, stream both inputs with pauses, collect results, score."""

    def __init__(self, dut, *, pause=0.0, out_pause=0.0, seed=0):
        self.dut = dut
        self.lanes, self.width, self.act_width, self.acc_width = unit_shape(dut)
        self.pause, self.out_pause, self.seed = pause, out_pause, seed
        self.sources = []
        self.sink = None

    async def reset(self, cycles=2):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0

    def start(self):
        def pauses(p, salt):
            return random_pauses(p, self.seed * 3 + salt) if p else no_pauses()
        self.w_source = StreamSource(self.dut, "w_stream", self.dut.clk, pauses(self.pause, 0))
        self.a_source = StreamSource(self.dut, "a_stream", self.dut.clk, pauses(self.pause, 1))
        self.results = 0

        def count(word):
            self.results += bin(word >> (self.lanes * self.acc_width)).count("1")
        self.sink = StreamSink(self.dut, "o_stream", self.dut.clk, pauses(self.out_pause, 2),
                               callback=count)

    def stop(self):
        self.w_source.stop()
        self.a_source.stop()
        self.sink.stop()

    async def run_job(self, job):
        """Stream one job; return a :class:`SparseMacResult`."""
        await RisingEdge(self.dut.clk)
        self.dut.fmt.value = int(job.fmt)
        self.dut.nm_n.value = int(job.nm_n)
        self.dut.nm_m_log2.value = int(job.nm_m).bit_length() - 1 if int(job.fmt) else 0
        self.start()
        vectors = job.acts.shape[0]
        weights = pack_weight_beats(job, self.width)
        self.w_source.queue.extend(weights * vectors)
        self.a_source.queue.extend(pack_act_beats(job.acts, self.lanes, self.act_width))
        rows = int(np.count_nonzero(job.end))
        expected = rows * vectors
        limit = 64 * (len(weights) + job.acts.shape[1]) * vectors + 1000
        waited = 0

        while self.results < expected:
            await RisingEdge(self.dut.clk)
            waited += 1
            assert waited <= limit, f"no progress: {self.results} of {expected} results out"
        # Keep taking for a while: nothing more may come out once every row is done.
        await ClockCycles(self.dut.clk, 8)
        self.stop()
        out = np.array(unpack_results(self.sink.received, self.lanes, self.acc_width),
                       dtype=np.int64)
        assert len(out) == expected, "results after the last row"
        first = min(self.w_source.first_offer_cycle, self.a_source.first_offer_cycle)
        return SparseMacResult(out=out.reshape(vectors, rows),
                               cycles=self.sink.last_take_cycle - first + 1)


def score(job, result, dense=None):
    want = golden_run(job)
    np.testing.assert_array_equal(result.out, want.out)
    if dense is not None:   # the layer's own integer product, independent of the format
        acts = np.asarray(job.acts, dtype=np.int64)[:, :dense.shape[1]]
        np.testing.assert_array_equal(result.out, acts @ dense.T.astype(np.int64))


async def start(dut, **kwargs):
    Clock(dut.clk, 10, unit="ns").start()
    dut.w_stream__valid.value = 0
    dut.a_stream__valid.value = 0
    dut.o_stream__ready.value = 0
    dut.fmt.value = 0
    dut.nm_n.value = 0
    dut.nm_m_log2.value = 0
    bench = SparseMacBench(dut, **kwargs)
    await bench.reset()
    return bench


def random_layer(rng, rows, k, width, density):
    """Random codes with an empty row, a fully dense row and a row with a long zero run."""
    hi = 2 ** (width - 1)
    w = rng.integers(-hi, hi, size=(rows, k))
    w[rng.random((rows, k)) >= density] = 0
    w[0] = 0
    w[1] = rng.integers(1, hi, size=k) * rng.choice([-1, 1], size=k)
    if rows > 2:
        w[2] = 0
        w[2, [0, k - 1]] = [hi - 1, -hi]
    return w


def random_acts(rng, vectors, k, act_width):
    hi = 2 ** (act_width - 1)
    return rng.integers(-hi, hi, size=(vectors, k))


@cocotb.test()
async def random_layers_with_stalls(dut):
    """Unstructured at several densities and 2:4 / 1:8 layers, random pauses on every stream."""
    bench = await start(dut, pause=0.3, out_pause=0.3, seed=1)
    rng = np.random.default_rng(11)
    for fmt, density, k in [("unstructured", 0.5, 300), ("unstructured", 0.1, 600),
                            ("unstructured", 1.0, 40), ("2:4", 1.0, 90), ("1:8", 1.0, 64)]:
        w = random_layer(rng, 6, k, bench.width, density)
        if fmt != "unstructured":
            n, m = map(int, fmt.split(":"))
            w = w * nm_mask(w, n, m)
        job = make_job(compress(w, bench.lanes, fmt), random_acts(rng, 3, k, bench.act_width))
        score(job, await bench.run_job(job), dense=w)


@cocotb.test()
async def accumulator_bound(dut):
    """Fully dense rows of max_k extreme values: the largest and smallest results the unit can hold."""
    bench = await start(dut, pause=0.2, out_pause=0.2, seed=2)
    max_k = 2 ** (bench.acc_width - bench.width - bench.act_width)
    hw, ha = 2 ** (bench.width - 1), 2 ** (bench.act_width - 1)
    w = np.array([[-hw] * max_k, [hw - 1] * max_k, [-hw, hw - 1] * (max_k // 2)])
    acts = np.array([[-ha] * max_k, [ha - 1] * max_k])
    job = make_job(compress(w, bench.lanes), acts)
    result = await bench.run_job(job)
    score(job, result, dense=w)
    assert result.out[0, 0] == max_k * hw * ha == 2 ** (bench.acc_width - 2)
    assert result.out[1, 0] == -max_k * hw * (ha - 1)


@cocotb.test()
async def full_throughput_without_stalls(dut):
    """No pauses: the pass takes the golden model's stall-free cycles (one weight beat a clock)."""
    bench = await start(dut)
    rng = np.random.default_rng(3)
    w = random_layer(rng, 20, 200, bench.width, 0.3)
    job = make_job(compress(w, bench.lanes), random_acts(rng, 4, 200, bench.act_width))
    result = await bench.run_job(job)
    score(job, result, dense=w)
    assert result.cycles == golden_run(job).cycles


@cocotb.test()
async def reset_mid_stream(dut):
    """A reset with beats in flight empties the unit; the restarted pass is exact."""
    bench = await start(dut, pause=0.25, out_pause=0.25, seed=4)
    rng = np.random.default_rng(5)
    w = random_layer(rng, 8, 100, bench.width, 0.4)
    job = make_job(compress(w, bench.lanes), random_acts(rng, 3, 100, bench.act_width))
    bench.start()
    bench.w_source.queue.extend(pack_weight_beats(job, bench.width) * 3)
    bench.a_source.queue.extend(pack_act_beats(job.acts, bench.lanes, bench.act_width))
    while bench.w_source.sent < 10:
        await RisingEdge(dut.clk)
    bench.stop()
    await bench.reset()
    assert int(dut.o_stream__valid.value) == 0
    score(job, await bench.run_job(job), dense=w)
