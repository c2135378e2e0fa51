"""Simulation of hwprune's RTL (installed as ``hwprune.sim``).

- :mod:`.build`: Verilog generation and Verilator builds, cached by content hash;
- :mod:`.verilator_lib`: the generated Verilog compiled with a C++ shim into a shared library
  that processes whole buffers per call (the host driver's fast path);
- :mod:`.cocotb_run`: the same RTL under cocotb 2.x on Verilator (verification);
- :mod:`.stimulus`: random and corner-value stimulus shared by every test bench.
"""
