# plantwatch: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PORT   ?= 8000
BIN     = $(VENV)/bin

.PHONY: demo test lint typecheck layers unit bench system-deps clean fuzz

# Stock Debian ships python3 without venv/ensurepip (package python3-venv).
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "plantwatch needs Python >= 3.11 ($(PYTHON) is older); set PYTHON=python3.11"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing python3-venv (Debian package)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv \
	      && $(PYTHON) -m venv $(VENV); \
	  else \
	    echo "cannot create a virtualenv: install it with  sudo apt-get install -y python3-venv"; \
	    exit 1; \
	  fi; }
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[demo,test]'
	touch $@ $(VENV)/.installed

## demo: embedded broker (the extra `demo`: amqtt) or a local mosquitto, SQLite,
## simulated plant with a leak, API + dashboard
demo: $(VENV)/.installed
	$(BIN)/plantwatch demo --port $(PORT)

## system-deps: Debian's mosquitto and influxdb (the integration tests start their own),
## chromium (the dashboard is tested in a real headless browser) and systemd (its
## systemd-analyze checks the shipped unit)
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v influxd >/dev/null 2>&1 || [ -x /usr/bin/influxd ] || missing="$$missing influxdb"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing$$missing (Debian packages)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "make test needs the Debian packages:$$missing"; \
	    echo "install them with:  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

## layers: the import contracts of pyproject.toml (docs/architecture.md)
layers: $(VENV)/.installed-test
	$(BIN)/lint-imports

unit: $(VENV)/.installed-test
	$(BIN)/pytest -q

## test: installs what the tests need, then ruff, mypy, the import contracts and the whole suite
test: system-deps $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q

## bench: throughput figures beside baselines measured in the same run
bench: system-deps $(VENV)/.installed-test
	$(BIN)/python benchmarks/ingest_throughput.py
	$(BIN)/python benchmarks/detector_throughput.py
	$(BIN)/python benchmarks/alarm_throughput.py
	$(BIN)/python benchmarks/hostile_load.py

## fuzz: coverage-guided fuzzers (atheris) of the three payload decoders; see fuzz/README.md.
## Each harness first runs its seeds once (regressions), then fuzzes a copy of them for
## FUZZ_SECONDS; fails if any finds a crash (the inputs are in $(FUZZ_DIR)/crashes/).
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 2048
FUZZ_DIR     ?= var/fuzz
fuzz: $(VENV)/.installed-test
	@$(BIN)/python -c 'import atheris' 2>/dev/null || \
	  $(BIN)/pip install --quiet --only-binary=atheris atheris
	@mkdir -p $(FUZZ_DIR)/crashes
	@failed=""; \
	for h in json lp sparkplug; do \
	  echo "== fuzz_$$h: the seeds of fuzz/corpus/$$h, then $(FUZZ_SECONDS) s of fuzzing"; \
	  rm -rf $(FUZZ_DIR)/corpus-$$h && cp -r fuzz/corpus/$$h $(FUZZ_DIR)/corpus-$$h; \
	  $(BIN)/python fuzz/fuzz_$$h.py -timeout=10 fuzz/corpus/$$h/* \
	  && $(BIN)/python fuzz/fuzz_$$h.py $(FUZZ_DIR)/corpus-$$h -dict=fuzz/$$h.dict \
	       -max_len=$(FUZZ_MAX_LEN) -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	       -artifact_prefix=$(FUZZ_DIR)/crashes/$$h- -print_final_stats=1 \
	  || failed="$$failed fuzz_$$h"; \
	done; \
	if [ -n "$$failed" ]; then \
	  echo "FAILED:$$failed (traceback above; input: its 'Running:' seed or $(FUZZ_DIR)/crashes/)"; exit 1; \
	fi

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
