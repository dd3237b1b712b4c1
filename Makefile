# Two commands for a fresh machine: `make run` (the main job) and `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Offline workplaces ship the datasets beside the checkout; elsewhere perfstudy downloads them.
ifeq ($(PERFSTUDY_DATA_DIR),)
ifneq ($(wildcard ../shared/datasets),)
export PERFSTUDY_DATA_DIR := $(abspath ../shared/datasets)
endif
endif

.PHONY: run test install clean

install: $(VENV)/.installed

# torch/torchvision are pinned to the releases this project is tested with (2.11 - 2.14 work).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q --no-build-isolation -e ".[test]"
	touch $@

# The test suite also exercises the optional extras: MLflow export, sklearnex SVMs and Ray.
$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q --no-build-isolation -e ".[test,mlflow,intel,ray]"
	touch $@

run: install
	$(PY) -m perfstudy run studies/quick.yaml
	$(PY) -m perfstudy report --out report

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info
