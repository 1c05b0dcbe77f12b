# Two entry points; each sets itself up (virtual environment + install) on a fresh machine.
#   make demo   generate a synthetic posed scan and print/plot its summary
#   make test   run the whole test suite
PY := .venv/bin/python
DEMO_OUT ?= runs/demo

.PHONY: demo test setup bench

setup:
	@scripts/setup.sh dev,viz

demo: setup
	$(PY) -m posevlm synth --out $(DEMO_OUT) --scenes 2 --frames 300 --size 320x240 --seed 0
	$(PY) -m posevlm info $(DEMO_OUT)/synth_0000 --plot $(DEMO_OUT)/synth_0000_topdown.png

test: setup
	$(PY) -m pytest -n 2 tests

bench: setup
	$(PY) benchmarks/geometry/pose_index_bench.py
	$(PY) benchmarks/scenes/render_bench.py
