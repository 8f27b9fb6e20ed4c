# radpulse: the two commands a new machine needs are `make demo` and `make test` (see README.md).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install demo up test test-kafka lint bench clean

$(BIN)/radpulse: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/radpulse

# DCMTK's storescu is what the integration tests (and many modalities) send with.
.PHONY: dcmtk
dcmtk:
	@command -v /usr/bin/storescu >/dev/null 2>&1 || { \
	  echo "installing DCMTK (Debian package dcmtk) for storescu"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dcmtk >/dev/null; }

demo: install
	$(BIN)/radpulse demo

up: install
	$(BIN)/radpulse up

test: install dcmtk
	$(BIN)/pytest $(PYTEST_ARGS)

# The Kafka-facing tests again, against the broker named by RADPULSE_TEST_KAFKA (Apache Kafka in CI).
test-kafka: install dcmtk
	$(BIN)/pytest -m kafka $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

bench: install dcmtk
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) radpulse-data .pytest_cache
