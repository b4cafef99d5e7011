# Two entry points that set everything up on a fresh machine with Python 3 and pip:
#   make train   trains the Normalized LSTM on character-level Penn Treebank (the study's config
#                with the normprop initialization and learning rate it found best: critical
#                gamma_h, Adam at 8e-3; minutes on 2 cores)
#   make test    runs the linter and the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The offline copies of this project's machines; elsewhere set NPRNN_DATA_DIR or DATA_DIR, or let
# train.py download the data.
DATA_DIR ?= $(if $(NPRNN_DATA_DIR),,$(if $(wildcard ../shared/data/ptb),../shared/data,))
STAMP := $(VENV)/.installed

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

.PHONY: install train test lint
install: $(STAMP)

train: $(STAMP)
	$(PY) train.py --config=configs/ptb_char_study.py --config.model.gamma_init=critical \
		--config.opt.learning_rate=8e-3 --workdir=runs/ptb_char_normprop \
		$(if $(DATA_DIR),--data_dir=$(DATA_DIR))

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: $(STAMP) lint
	$(PY) -m pytest -q -n 2 --durations=20
