# Two commands do everything on a fresh machine (see README.md):
#   make demo   set up .venv, train the default pruned QRNN on the embedded corpus
#   make test   set up .venv, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[train,edge,dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python -m pruning.train --schedule polynomial --out runs/demo --force

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs/demo
