"""cocotb 2.x checks of the network engine on the generic bench (program beats and input words
with random pauses, result words taken with random pauses), scored against the golden model
and against a float64 evaluation of the integer network that never reads the program."""

import cocotb
import numpy as np

from hwprune.contract.net_engine import NetJob, requantize
from hwprune.deploy import build_program
from hwprune.sim.cocotb_tb.block_bench import BlockBench
from hwprune.sim.stimulus import random_network


def reference(layers, x, width):
    """The network from its integer layers, not from the compiled program (a convolution
    through torch's conv2d and max_pool2d in float64, exact at these sizes; pooling after the
    requantization, as the model has it)."""
    x = np.asarray(x, dtype=np.int64)
    for i, layer in enumerate(layers):
        final = i == len(layers) - 1
        if layer.shape is None:
            y = x @ np.asarray(layer.weight, dtype=np.int64).T + layer.bias
        else:
            import torch
            w = torch.as_tensor(np.asarray(layer.weight), dtype=torch.float64)
            t = torch.as_tensor(x, dtype=torch.float64).reshape(len(x), w.shape[1],
                                                               *layer.shape)
            y = torch.nn.functional.conv2d(t, w, torch.as_tensor(layer.bias, dtype=w.dtype),
                                           padding=(w.shape[2] - 1) // 2)
            y = y.flatten(1).round().to(torch.int64).numpy()
        if final:
            return y
        x = requantize(y, layer.scale, layer.shift, layer.relu, width)
        if layer.shape is not None and layer.pool:
            import torch
            t = torch.as_tensor(x, dtype=torch.float64).reshape(len(x), -1, *layer.shape)
            x = torch.nn.functional.max_pool2d(t, 2).flatten(1).to(torch.int64).numpy()
    return x


def _job(rng, bench, sizes, *, vectors=3, skip_zero=True, zeros=0.5):
    layers = random_network(rng, sizes, bench.width)
    program, _ = build_program(layers, lanes=bench.lanes, width=bench.width)
    hi = 2 ** (bench.width - 1)
    x = rng.integers(-hi, hi, size=(vectors, sizes[0]))
    x[rng.random(x.shape) < zeros] = 0
    return NetJob(program, x, skip_zero=skip_zero), layers


@cocotb.test()
async def random_networks_with_stalls(dut):
    """Networks of one to four layers, both skip settings, pauses on every stream."""
    bench = await BlockBench.start(dut, in_pause=0.3, out_pause=0.3, seed=1)
    rng = np.random.default_rng(21)
    for sizes in ([20, 5], [40, 33, 9], [17, 64, 30, 12], [3, 1, 40, 2, 7]):
        for skip in (True, False):
            job, layers = _job(rng, bench, sizes, skip_zero=skip)
            got = await bench.check_job(job)
            np.testing.assert_array_equal(got.out, reference(layers, job.inputs, bench.width))
            assert got.busy_cycles >= got.beats and sum(got.layer_cycles) == got.busy_cycles


@cocotb.test()
async def zero_inputs_skip_every_column(dut):
    """All-zero inputs: with skip_zero no column of the first layer runs; the outputs are the
    biases carried through the network."""
    bench = await BlockBench.start(dut, in_pause=0.1, out_pause=0.1, seed=2)
    job, layers = _job(np.random.default_rng(22), bench, [30, 20, 6], zeros=1.0)
    got = await bench.check_job(job)
    np.testing.assert_array_equal(got.out, reference(layers, job.inputs, bench.width))


@cocotb.test()
async def reset_mid_stream(dut):
    """A reset while the program streams in: the engine forgets it (a half-loaded program never
    runs) and the restarted pass is exact."""
    bench = await BlockBench.start(dut, in_pause=0.25, out_pause=0.25, seed=4)
    job, layers = _job(np.random.default_rng(5), bench, [24, 18, 5])
    await bench.reset_mid_stream(job, 10)
    got = await bench.check_job(job)
    np.testing.assert_array_equal(got.out, reference(layers, job.inputs, bench.width))
