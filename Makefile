# Two entry points; each sets itself up (virtual environment + install) on a fresh machine.
#   make demo   synthetic scans -> frame selection -> oracle evaluation -> report (~1 CPU-minute after setup)
#   make test   run the whole test suite (what CI runs)
#   make test-fast   the fast lane: everything but the subprocess end-to-end tests marked slow (< 3 min)
PY := .venv/bin/python
DEMO_OUT ?= runs/demo

.PHONY: demo test test-fast setup bench

setup:
	@scripts/setup.sh dev,viz,hf,eval-text,train,lmms

demo: setup
	$(PY) -m posevlm demo --out $(DEMO_OUT)

test: setup
	$(PY) -m pytest -n 2 tests

test-fast: setup
	$(PY) -m pytest -n 2 -m "not slow" tests

bench: setup
	$(PY) benchmarks/geometry/pose_index_bench.py
	$(PY) benchmarks/scenes/render_bench.py
	$(PY) benchmarks/sampling/pose_fps_bench.py
	$(PY) benchmarks/sampling/voxel_coverage_bench.py
	$(PY) benchmarks/eval/scoring_bench.py
	$(PY) benchmarks/eval/resume_scan_bench.py
	$(PY) benchmarks/attention/pose_bias_bench.py
	$(PY) benchmarks/models/vlm2_memory_bench.py
	$(PY) benchmarks/eval/demo_bench.py
	$(PY) benchmarks/train/train_bench.py --threads 1
	$(PY) benchmarks/models/spatial_mllm_bench.py --shape tiny
