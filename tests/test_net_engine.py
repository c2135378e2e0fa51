"""The network engine: golden model against the integer network it was compiled from, every
backend bit-identical with it (results and the columns / beats counters), stalls, zero
activations skipped, programs that do not fit named before anything runs."""

import numpy as np
import pytest

from hwprune import get_backend
from hwprune.contract import net_engine as ne
from hwprune.deploy import ProgramLayer, build_program
# the integer network from its layers, not from the compiled program (the cocotb bench's too)
from hwprune.sim.cocotb_tb.net_engine_tb import reference
from hwprune.sim.stimulus import random_conv_network, random_network


def _inputs(rng, vectors, k, width, zeros=0.5):
    hi = 2 ** (width - 1)
    x = rng.integers(-hi, hi, size=(vectors, k))
    x[rng.random(x.shape) < zeros] = 0
    x[0, :2] = [-hi, hi - 1][:min(2, k)] if k >= 2 else -hi
    return x


@pytest.mark.parametrize("lanes,width", [(4, 8), (8, 4), (16, 16), (8, 8)])
@pytest.mark.parametrize("balance", [True, False])
def test_golden_model_is_the_integer_network(lanes, width, balance, rng):
    for sizes in ([70, 40, 10], [5, 90, 3, 33, 7], [16, 1, 16]):
        layers = random_network(rng, sizes, width)
        program, positions = build_program(layers, lanes=lanes, width=width, balance=balance)
        x = _inputs(rng, 6, sizes[0], width)
        for skip in (True, False):
            got = ne.run(ne.NetJob(program, x, skip_zero=skip))
            np.testing.assert_array_equal(got.out, reference(layers, x, width))
        # The hidden outputs really are spread over the lanes (a permutation of positions).
        for pos, rows in zip(positions, sizes[1:]):
            assert sorted(pos) == sorted(set(pos)) and len(pos) == rows


def test_requantize_rounds_half_up_and_clamps():
    y = np.array([-300, -5, -4, -3, 3, 4, 5, 6, 300])
    np.testing.assert_array_equal(ne.requantize(y, 1, 3, False, 4),
                                  [-8, -1, 0, 0, 0, 1, 1, 1, 7])
    np.testing.assert_array_equal(ne.requantize(y, 1, 3, True, 4), [0, 0, 0, 0, 0, 1, 1, 1, 7])
    np.testing.assert_array_equal(ne.requantize(y, 3, 0, False, 16), 3 * y)


@pytest.mark.parametrize("lanes,width", [(4, 8), (16, 4)])   # the stall test's builds
def test_the_engines_requantization_at_every_shift(lanes, width, rng):
    """A hidden layer requantized at shifts from 0 to the largest, with the largest scale and
    ties (odd products at shift 1), read out through an identity layer: the verilated engine
    against the contract's requantize."""
    k = 8
    hi = 2 ** (width - 1)
    bound = 2 ** (ne.geometry(lanes=lanes, width=width).bias_width - 1)
    backend = get_backend("verilator", lanes=lanes, width=width)
    jobs = []
    for shift in (0, 1, 2, 7, 2 * width + 3, 40, 2 ** ne.SHIFT_BITS - 1):
        for scale in (1, 3, 2 ** ne.SCALE_BITS - 1):
            w = rng.integers(-hi, hi, size=(k, k))
            w[0] = -hi                                  # the most negative products
            bias = rng.integers(-bound, bound, size=k)
            bias[1] = bound - 1
            layers = [ProgramLayer(w, bias, scale=scale, shift=shift, relu=bool(shift % 2)),
                      ProgramLayer(np.eye(k, dtype=np.int64), np.zeros(k, dtype=np.int64))]
            program, _ = build_program(layers, lanes=lanes, width=width)
            jobs.append(ne.NetJob(program, _inputs(rng, 3, k, width, zeros=0.2), True))
    for job, got in zip(jobs, backend.run("net_engine", jobs)):
        want = ne.run(job)
        np.testing.assert_array_equal(got.out, want.out)
        assert np.abs(want.out).max() <= hi


def test_backends_are_bit_identical(rng, simulators_agree):
    width = 8
    jobs = []
    for sizes, zeros in (([60, 45, 10], 0.5), ([33, 70, 9], 0.0), ([20, 8], 1.0)):
        layers = random_network(rng, sizes, width)
        program, _ = build_program(layers, lanes=8, width=width)
        for skip in (True, False):
            jobs.append(ne.NetJob(program, _inputs(rng, 4, sizes[0], width, zeros), skip))

    def same(want, got):
        np.testing.assert_array_equal(got.out, want.out)
        assert (got.columns, got.beats, got.vectors) == (want.columns, want.beats, want.vectors)

    simulators_agree("net_engine", jobs, same, lanes=8, width=width)


@pytest.mark.parametrize("lanes,width", [(4, 8), (16, 4)])
def test_verilator_with_random_stalls_on_every_stream(lanes, width, rng):
    backend = get_backend("verilator", lanes=lanes, width=width, in_stall=0.4, out_stall=0.5,
                          stall_seed=7)
    for sizes in ([40, 30, 12], [9, 50, 50, 5], [100, 2]):
        layers = random_network(rng, sizes, width)
        program, _ = build_program(layers, lanes=lanes, width=width)
        job = ne.NetJob(program, _inputs(rng, 5, sizes[0], width), bool(rng.integers(2)))
        got, want = backend.run("net_engine", [job])[0], ne.run(job)
        np.testing.assert_array_equal(got.out, want.out)
        assert (got.columns, got.beats) == (want.columns, want.beats)
        assert got.busy_cycles >= got.beats and sum(got.layer_cycles) == got.busy_cycles


def test_zero_activations_are_skipped_and_cost_no_beats(rng):
    width, lanes = 8, 8
    layers = random_network(rng, [64, 48, 10], width, density=0.5)
    program, _ = build_program(layers, lanes=lanes, width=width)
    backend = get_backend("verilator", lanes=lanes, width=width)
    x = _inputs(rng, 8, 64, width, zeros=0.75)
    on = backend.run("net_engine", [ne.NetJob(program, x, True)])[0]
    off = backend.run("net_engine", [ne.NetJob(program, x, False)])[0]
    np.testing.assert_array_equal(on.out, off.out)
    # The first layer's columns: every one with weights (off), only the non-zero inputs (on).
    cols = np.asarray(program.cols)[:64, 1]
    first = ((x != 0) & (cols > 0)).sum()
    assert on.columns < off.columns and on.beats < off.beats
    # Each skipped beat saves its clock; a word left with no column costs the selector one.
    empty_words = (~((x != 0) & (cols > 0)).reshape(8, 8, lanes).any(axis=2)).sum()
    assert off.layer_cycles[0] - on.layer_cycles[0] >= ((x == 0) * cols).sum() - empty_words
    assert on.columns >= first
    # All-zero inputs: no beat of the first layer runs at all.
    zero = backend.run("net_engine", [ne.NetJob(program, np.zeros((2, 64), int), True)])[0]
    assert zero.columns == ne.run(ne.NetJob(program, np.zeros((2, 64), int), True)).columns
    # per vector: one clock per (empty) input word and per output word, plus pipeline fill
    assert zero.layer_cycles[0] <= 2 * (64 // lanes + 48 // lanes + 10) < off.layer_cycles[0] / 8


def test_lane_balancing_takes_fewer_beats(rng):
    """Spreading each hidden layer's outputs over the lanes beats the plain order (this is what
    the compiler's permutation is for)."""
    w = rng.integers(-100, 100, size=(300, 64))
    w[rng.random(w.shape) > 0.08] = 0
    layers = [ProgramLayer(w, np.zeros(300, int), 1, 8, True),
              ProgramLayer(rng.integers(-5, 5, size=(10, 300)), np.zeros(10, int))]
    plain, _ = build_program(layers, lanes=8, width=8, balance=False)
    balanced, _ = build_program(layers, lanes=8, width=8, balance=True)
    kept = np.count_nonzero(w)
    beats = [int(np.asarray(p.cols)[:64, 1].sum()) for p in (plain, balanced)]
    assert kept / 8 <= beats[1] < beats[0]
    x = rng.integers(-50, 50, size=(3, 64))
    np.testing.assert_array_equal(ne.run(ne.NetJob(plain, x)).out,
                                  ne.run(ne.NetJob(balanced, x)).out)


def test_dense_program_stores_every_weight(rng):
    layers = random_network(rng, [20, 30, 4], 8, density=0.2)
    dense, _ = build_program(layers, lanes=4, width=8, dense=True)
    counts = np.asarray(dense.cols)[:, 1]
    # a column: a beat per output word (30 outputs: 8 words; 4 outputs: 1), zeros included
    np.testing.assert_array_equal(counts, [8] * 20 + [1] * 30 + [0] * 2)
    x = _inputs(rng, 3, 20, 8)
    np.testing.assert_array_equal(ne.run(ne.NetJob(dense, x)).out, reference(layers, x, 8))


def test_a_program_that_does_not_fit_names_the_memory(rng):
    layers = random_network(rng, [64, 300, 10], 8, density=1.0)
    program, _ = build_program(layers, lanes=4, width=8)
    beats = len(program.value)
    with pytest.raises(ValueError, match=rf"^the program needs {beats:,} weights entries, the "
                                         rf"engine's weights memory holds 4,096 "
                                         rf"\({beats - 4096:,} over; [\d,]+ bytes\)$"):
        ne.check_program(program, max_beats=4096)
    with pytest.raises(ValueError, match=r"layer 0: 16 input and 75 output words, the engine "
                                         r"holds 1 to 64 \(256 values\)"):
        ne.check_program(program, max_rows=256)
    backend = get_backend("verilator", lanes=4, width=8)
    big = random_network(rng, [64, 4096, 10], 8, density=0.01)
    with pytest.raises(ValueError, match=r"^the program needs 4,160 cols entries, the engine's "
                                         r"cols memory holds 1,024 \(3,136 over"):
        backend.run("net_engine", [ne.NetJob(build_program(big, lanes=4, width=8)[0],
                                             np.zeros((1, 64), int))])


def test_bad_programs_and_inputs_are_refused(rng):
    layers = random_network(rng, [10, 12, 3], 8)
    program, _ = build_program(layers, lanes=4, width=8)
    with pytest.raises(ValueError, match="compiled for lanes = 4, the engine is built with 8"):
        ne.check_program(program, lanes=8, width=8)
    broken = ne.NetProgram(**{**vars(program), "layers": [program.layers[0], ne.NetLayer(
        **{**vars(program.layers[1]), "in_words": 4})]})
    with pytest.raises(ValueError, match="layer 1 takes 4 words, layer 0 gives 3"):
        ne.check_program(broken)
    with pytest.raises(ValueError, match=r"inputs must be \(vectors, 10\), not \(2, 9\)"):
        ne.run(ne.NetJob(program, np.zeros((2, 9), int)))
    with pytest.raises(ValueError, match="an input does not fit 8 signed bits"):
        ne.run(ne.NetJob(program, np.full((1, 10), 128)))
    wide = [ProgramLayer(np.full((3, 4), 200), np.zeros(3, int))]
    with pytest.raises(ValueError, match="a weight does not fit 8 signed bits"):
        ne.check_program(build_program(wide, lanes=4, width=8)[0])


# --- convolutions ---------------------------------------------------------------------------------

#: small CNNs: input (channels, height, width), convolutions (out channels, kernel, pool), then
#: fully connected widths -- channels below, at and above the lanes, 1x1 and 3x3, a rectangle
CNNS = [((1, 8, 8), ("conv", 8, 3, True), ("conv", 16, 3, True), 10),
        ((3, 4, 8), ("conv", 5, 1, False), ("conv", 32, 3, True), 7, 5),
        ((2, 2, 2), ("conv", 4, 3, False), 3),
        ((2, 4, 4), ("conv", 128, 1, True), 6)]        # 32 channel words at 4 lanes
CONV = {"conv": 1, "max_rows": 2048, "max_cols": 1024, "max_beats": 4096}


def _cnn_job(rng, spec, lanes, width=8, vectors=4, zeros=0.4, skip=True):
    layers = random_conv_network(rng, spec, width)
    program, _ = build_program(layers, lanes=lanes, width=width)
    c, h, w = spec[0]
    x = _inputs(rng, vectors, c * h * w, width, zeros)
    return ne.NetJob(program, program.arrange(x), skip), layers, x


@pytest.mark.parametrize("lanes", [4, 16])
def test_golden_convolutions_are_torchs_conv2d(lanes, rng):
    """The golden model reading the compiled program against the integer CNN evaluated with
    torch's conv2d / max_pool2d from its layers (padding at the border, pooled after the
    requantization, channels padded to powers of two and whole words)."""
    for spec in CNNS:
        job, layers, x = _cnn_job(rng, spec, lanes)
        runs = [ne.run(ne.NetJob(job.program, job.inputs, skip), lanes=lanes, width=8, **CONV)
                for skip in (True, False)]
        for got in runs:
            np.testing.assert_array_equal(got.out, reference(layers, x, 8))
        # a column per input channel, walked at every position: without skipping, the first
        # layer alone runs every input whose channel has kept weights; skipping runs fewer
        counts = ne.layer_entries(job.program, 0)[:, 1]
        assert runs[1].columns >= len(x) * (counts > 0).sum()
        assert runs[0].columns < runs[1].columns and runs[0].beats < runs[1].beats


def test_verilated_convolutions_with_random_stalls(rng):
    """A conv build of the engine (4 lanes) against the golden model: results, columns and
    beats, pauses on every stream, both skip settings; a fully connected network on the same
    build too."""
    backend = get_backend("verilator", lanes=4, width=8, in_stall=0.3, out_stall=0.4,
                          stall_seed=3).configure("net_engine", **CONV)
    jobs = [_cnn_job(rng, spec, 4, skip=skip)[0] for spec in CNNS for skip in (True, False)]
    layers = random_network(rng, [40, 30, 12], 8)
    jobs.append(ne.NetJob(build_program(layers, lanes=4, width=8)[0], _inputs(rng, 3, 40, 8)))
    for job, got in zip(jobs, backend.run("net_engine", jobs)):
        want = ne.run(job, lanes=4, width=8, **CONV)
        np.testing.assert_array_equal(got.out, want.out)
        assert (got.columns, got.beats, got.vectors) == (want.columns, want.beats, want.vectors)
        assert sum(got.layer_cycles) == got.busy_cycles >= got.beats


def test_backends_are_bit_identical_on_convolutions(rng, simulators_agree):
    jobs = [_cnn_job(rng, spec, 4, skip=skip)[0] for spec in CNNS for skip in (True, False)]

    def same(want, got):
        np.testing.assert_array_equal(got.out, want.out)
        assert (got.columns, got.beats, got.vectors) == (want.columns, want.beats, want.vectors)
    simulators_agree("net_engine", jobs, same, build=CONV, lanes=4, width=8)


def test_bad_convolution_programs_are_refused(rng):
    job, _, _ = _cnn_job(rng, CNNS[0], 4)
    program = job.program
    with pytest.raises(ValueError, match=r"layer 0 is a convolution; the engine is built "
                                         r"without them \(conv = 0\)"):
        ne.check_program(program, max_rows=2048)
    with pytest.raises(ValueError, match=r"layer 0: its 64 positions of 8 channels need 128 "
                                         r"accumulator words a lane, the engine holds 64"):
        ne.check_program(program, conv=1, max_rows=256)
    first = program.layers[0]

    def broken(**fields):
        return ne.NetProgram(**{**vars(program), "layers": [
            ne.NetLayer(**{**vars(first), **fields}), *program.layers[1:]]})
    with pytest.raises(ValueError, match=r"layer 0: 64 inputs are not 8 x 8 positions of 2 "
                                         r"channels"):
        ne.check_program(broken(c_log2=1), **CONV)
    with pytest.raises(ValueError, match=r"layer 0: 32 output words are not its 64 positions"):
        ne.check_program(broken(pool=False), **CONV)
    with pytest.raises(ValueError, match=r"a weight's row names a channel or a kernel tap"):
        ne.check_program(broken(pad=0), **CONV)
    with pytest.raises(ValueError, match=r"conv needs max_rows of at least 16 \* lanes"):
        ne.geometry(lanes=16, width=8, conv=1, max_rows=128)
    bad_map = ne.NetProgram(**{**vars(program), "input_map": np.zeros(64, int)})
    with pytest.raises(ValueError, match="the input map must place each input"):
        ne.check_program(bad_map, **CONV)


def test_lane_refinement_lowers_the_expected_beats(rng):
    """The swaps after the greedy assignment: never more expected beats (columns weighted by
    how often their input is non-zero), fewer here, and the network unchanged."""
    from hwprune.deploy import _balance, _refine
    w = rng.integers(-100, 100, size=(100, 300))
    w[rng.random(w.shape) > 0.08] = 0
    activity = rng.random(300)

    def expected(pos):
        load = np.zeros((300, 4))
        for lane in range(4):
            load[:, lane] = (w[pos % 4 == lane] != 0).sum(axis=0)
        return load.max(axis=1) @ activity
    greedy = _balance(w, 4, 25)
    refined = _refine(w, greedy, 4, 25, activity)
    assert sorted(refined) == list(range(100))          # a permutation of the positions
    assert expected(refined) < expected(greedy)
    layers = [ProgramLayer(w, np.zeros(100, int), 1, 8, True, activity=activity),
              ProgramLayer(rng.integers(-5, 5, size=(10, 100)), np.zeros(10, int))]
    program, _ = build_program(layers, lanes=4, width=8)
    x = rng.integers(-50, 50, size=(3, 300))
    np.testing.assert_array_equal(ne.run(ne.NetJob(program, x)).out, reference(layers, x, 8))
