# stylize: every entry point a newcomer or an operator needs.
# `make setup` then `make test` (or `make demo`) is the whole quick start.

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
WEIGHTS ?= imagenet
SIZE   ?= 384
ITERATIONS ?= 300
OUT    ?= out
PORT   ?= 50051
METRICS_PORT ?= 9090
IMAGE  ?= stylize
VARIANT ?= gpu
TAG    ?= 0.2.0-$(VARIANT)

export PYTHONUNBUFFERED := 1
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: help setup proto run demo samples test bench gpu-check reliability lint monitoring-check k8s-validate docker-build clean

help: ## list the targets and what each does
	@awk -F ':.*## ' '/^[a-zA-Z0-9_.-]+:.*## / { printf "  %-17s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[server,dev]"
	touch $@

setup: $(VENV)/.installed ## create .venv and install the project with the server and dev extras

proto: $(VENV)/.installed ## regenerate the stubs and reason enums from proto/ into proto/stylize_api
	$(PY) scripts/gen_proto.py

run: $(VENV)/.installed ## start the server on localhost (WEIGHTS=imagenet|PATH|random:SEED)
	$(VENV)/bin/stylize-server --host 127.0.0.1 --port $(PORT) --metrics-port $(METRICS_PORT) --weights $(WEIGHTS)

samples: $(VENV)/.installed ## draw the demo's content and style images into samples/generated
	$(PY) scripts/make_samples.py samples/generated

demo: $(VENV)/.installed ## start a server, stylize the sample pair into out/, stop the server
	$(PY) scripts/demo.py --weights $(WEIGHTS) --out $(OUT) $(if $(filter 1,$(STATISTICS)),--statistics) $(if $(filter 1,$(CONTROLS) $(STATISTICS)),$(if $(filter 1,$(CONTROLS)),--controls) $(if $(filter file,$(origin SIZE)),,--size $(SIZE)) $(if $(filter file,$(origin ITERATIONS)),,--iterations $(ITERATIONS)),--size $(SIZE) --iterations $(ITERATIONS))

# Two passes: every test not marked `serial` on parallel workers (one a core,
# at most 4; a test file stays on one worker, with its module's servers), then
# the `serial` ones alone, since they measure latency and ordering under load.
# Both always run; the target fails if either did.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ "$$n" -gt 4 ] && n=4; echo $$n)
test: $(VENV)/.installed ## run the whole test suite (TEST_WORKERS=n parallel workers, default min(cores, 4))
	@status=0; \
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial" || status=1; \
	$(PY) -m pytest -m serial || status=1; \
	exit $$status

bench: $(VENV)/.installed ## engine and serving benchmarks: step vs floor, quality, precision, masks, tiling, cost model; served step and refusals vs the foundation build; HTTP over gRPC; video consistency, speed, RSS (tables + JSON)
	$(PY) -m benchmarks.engine_bench --out benchmarks/results
	$(PY) -m benchmarks.serving_bench --out benchmarks/results
	$(PY) -m benchmarks.http_bench --out benchmarks/results
	$(PY) -m benchmarks.video_bench --out benchmarks/results

gpu-check: $(VENV)/.installed ## on a GPU (< 8 min, fails at once without one): the GPU tests, s/it at 512 and 1024 px in float32/bfloat16 with XLA off/on, memory per MP, the cost model against each (one table); writes the measured profile benchmarks/results/device_profile.json
	$(PY) -m benchmarks.gpu_check --out benchmarks/results

reliability: $(VENV)/.installed ## full reliability and security run (table + JSON)
	$(PY) -m tests.reliability.run --out reliability-results

# Every check runs even when an earlier one fails, so one run lists all the
# findings; the target fails if any did. mypy takes its files (server/ and
# client/, strict, generated stubs excluded) from pyproject.toml.
lint: $(VENV)/.installed ## style checks: ruff check, ruff format --check, mypy (strict), hadolint
	@status=0; \
	for check in "$(VENV)/bin/ruff check ." "$(VENV)/bin/ruff format --check ." "$(VENV)/bin/mypy" \
	             "$(VENV)/bin/hadolint deploy/docker/Dockerfile"; do \
		echo "+ $$check"; $$check || status=1; \
	done; \
	exit $$status

monitoring-check: $(VENV)/.installed ## promtool: check and unit-test the alert rules, check the dashboard and a live /metrics
	$(PY) -m pytest tests/test_monitoring.py tests/test_monitoring_dashboard.py -q

k8s-validate: $(VENV)/.installed ## render every kustomize overlay and validate it offline
	$(PY) -m pytest tests/test_k8s_*.py -q

docker-build: ## build the GPU image (VARIANT=cpu for the CPU one); needs a Docker engine and internet
	DOCKER_BUILDKIT=1 docker build -f deploy/docker/Dockerfile --build-arg VARIANT=$(VARIANT) -t $(IMAGE):$(TAG) .

clean: ## remove outputs (out/, benchmark and reliability results)
	rm -rf out benchmarks/results reliability-results .pytest_cache
