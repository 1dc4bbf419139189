# patchinit: two commands for a newcomer.
#   make book   build the book (_build/html) in the quick profile
#   make test   run the test suite
# Both create .venv and install the pinned dependencies on first use.
#   make check-book   open every page of the built book in headless Chromium (tools/check_book.py)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)

# Data: $PATCHINIT_DATA, else a shared/data folder beside the checkout, else ./data
# (notebooks download the official archives into it when nothing is found).
PATCHINIT_DATA ?= $(firstword $(wildcard $(abspath ../shared/data)) $(abspath data))
PATCHINIT_CACHE ?= $(abspath .cache/patchinit)
export PATCHINIT_DATA PATCHINIT_CACHE
export PYTHONHASHSEED := 0

NOTEBOOKS := $(wildcard notebooks/*.md)

.PHONY: book test install bench paper clean help check-book
help:
	@echo "make book | make test | make check-book | make bench | make paper NB=notebooks/<name>.md | make clean"

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

# two xdist workers on two cores: one BLAS/OpenMP thread each
test: $(STAMP)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile

# The executed chapters are cached by their code, but they read the results store: when its records change,
# the cache is dropped, so no page shows the verdicts of an older store.
book: $(STAMP)
	@digest=$$(cat results/runs/*.json | sha256sum | cut -c1-32); \
	if [ "$$(cat .jupyter_cache/results-store.sha256 2>/dev/null)" != "$$digest" ]; then \
	  test -d .jupyter_cache && echo "book: the results store changed since the cached chapters ran; re-executing them"; \
	  rm -rf .jupyter_cache; mkdir -p .jupyter_cache; echo "$$digest" > .jupyter_cache/results-store.sha256; fi
	$(BIN)/jupyter-book build . --all --keep-going
	@test -f _build/html/index.html && echo "book: $(abspath _build/html/index.html)"

# needs Debian's chromium (apt-get install chromium); .ci/run installs it
check-book:
	$(BIN)/python tools/check_book.py _build/html

# One notebook in the paper profile (GPU advised): make paper NB=notebooks/02-mnist-kaiming.md [DEVICE=cuda] [SEEDS="[0]"]
# (the notebooks find the results store and book/paper from the repository, so this runs from the root)
paper: $(STAMP)
	@test -n "$(NB)" || (echo "usage: make paper NB=notebooks/<name>.md [DEVICE=cuda]"; exit 2)
	$(BIN)/jupytext --to ipynb --output $(NB:.md=.paper.ipynb) $(NB)
	$(BIN)/papermill $(NB:.md=.paper.ipynb) $(NB:.md=.paper.ipynb) \
	  -p profile paper -p allow_training True -p device $(or $(DEVICE),auto) $(if $(SEEDS),-p seeds "$(SEEDS)")

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf _build .jupyter_cache
