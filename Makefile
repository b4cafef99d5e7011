# Two entry points that set everything up on a fresh machine with Python 3 and pip:
#   make train   trains the Normalized LSTM on character-level Penn Treebank (small config)
#   make test    runs the linter and the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

.PHONY: install train test lint
install: $(STAMP)

train: $(STAMP)
	$(PY) train.py --config=configs/ptb_char_small.py --workdir=runs/ptb_char_small

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: $(STAMP) lint
	$(PY) -m pytest -q
