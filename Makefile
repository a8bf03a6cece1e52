# make demo   - create .venv from nothing and run the main job (the quick batch-size study)
# make test   - create .venv from nothing and run the test suite
# make gpu-check - the CUDA tests and GPU benchmarks (benchmarks/gpu.sh), tables in gpu-results/
PYTHON ?= python3
VENV   ?= .venv
PIP     = $(VENV)/bin/pip
PY      = $(VENV)/bin/python

.PHONY: demo test bench gpu-check clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch
	$(PIP) install -q -c constraints.txt -e ".[dev,cli,data]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/normlab bench --preset quick --workers 2

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) benchmarks/layers.py

gpu-check: $(VENV)/.installed
	PYTHON=$(PY) benchmarks/gpu.sh

clean:
	rm -rf $(VENV)
