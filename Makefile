# Two entry points: `make book` (set up, execute every chapter, build the HTML book)
# and `make test` (set up, run the test suite). PROFILE=smoke|quick|paper picks the
# notebook parameters of `make book`.
VENV ?= .venv
PYTHON ?= python3
PROFILE ?= quick
JOBS ?= 2
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup book test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 torchvision==0.28.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

book: setup
	$(PY) -m largebatch.reproduce --profile $(PROFILE) --jobs $(JOBS) --build

test: setup
	$(PY) -m pytest

clean:
	rm -rf _build
