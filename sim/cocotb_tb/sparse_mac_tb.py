"""cocotb 2.x checks of the sparse MAC unit, on the one generic bench
(:class:`~hwprune.sim.cocotb_tb.block_bench.BlockBench`: compressed weight beats replayed per
vector, activation beats and results, all with random pauses), scored against the golden model
and against the dense integer product of the layer."""

import cocotb
import numpy as np

from hwprune.compress import compress, nm_mask
from hwprune.contract.sparse_mac import accumulator_width, make_job
from hwprune.sim.cocotb_tb.block_bench import BlockBench, standard_tests
from hwprune.sim.stimulus import random_acts, random_layer


def score(job, result, dense):
    """The layer's own integer product, independent of the format and of the golden model."""
    acts = np.asarray(job.acts, dtype=np.int64)[:, :dense.shape[1]]
    np.testing.assert_array_equal(result.out, acts @ dense.T.astype(np.int64))


@cocotb.test()
async def random_layers_with_stalls(dut):
    """Unstructured at several densities and 2:4 / 1:8 layers, random pauses on every stream."""
    bench = await BlockBench.start(dut, in_pause=0.3, out_pause=0.3, seed=1)
    rng = np.random.default_rng(11)
    act_width = bench.params["act_width"]
    for fmt, density, k in [("unstructured", 0.5, 300), ("unstructured", 0.1, 600),
                            ("unstructured", 1.0, 40), ("2:4", 1.0, 90), ("1:8", 1.0, 64)]:
        w = random_layer(rng, 6, k, bench.width, density)
        if fmt != "unstructured":
            n, m = map(int, fmt.split(":"))
            w = w * nm_mask(w, n, m)
        job = make_job(compress(w, bench.lanes, fmt), random_acts(rng, 3, k, act_width))
        score(job, await bench.check_job(job), w)


@cocotb.test()
async def accumulator_bound(dut):
    """Fully dense rows of max_k extreme values: the largest and smallest results it can hold."""
    bench = await BlockBench.start(dut, in_pause=0.2, out_pause=0.2, seed=2)
    p = bench.params
    max_k, acc_width = p["max_k"], accumulator_width(p["width"], p["act_width"], p["max_k"])
    hw, ha = 2 ** (p["width"] - 1), 2 ** (p["act_width"] - 1)
    w = np.array([[-hw] * max_k, [hw - 1] * max_k, [-hw, hw - 1] * (max_k // 2)])
    acts = np.array([[-ha] * max_k, [ha - 1] * max_k])
    job = make_job(compress(w, bench.lanes), acts)
    result = await bench.check_job(job)
    score(job, result, w)
    assert result.out[0, 0] == max_k * hw * ha == 2 ** (acc_width - 2)
    assert result.out[1, 0] == -max_k * hw * (ha - 1)


def _layer_job(rng, k, bench):
    # A 20-row layer at density 0.3 over k inputs, and 4 activation vectors.
    w = random_layer(rng, 20, k, bench.width, 0.3)
    job = make_job(compress(w, bench.lanes), random_acts(rng, 4, k, bench.params["act_width"]))
    return job, w


full_throughput_without_stalls, reset_mid_stream = standard_tests(
    __name__, _layer_job, size=200, sent=10, score=score)
