# Two commands do everything on a fresh machine (see README.md):
#   make demo   set up .venv; train the default pruned QRNN on the embedded corpus,
#               convert it to LiteRT, run it with the device runtime
#   make test   set up .venv and .venv-edge; run the test suite, then the device
#               runtime's tests and a smoke run in .venv-edge, which has no TensorFlow
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EDGE_BIN := .venv-edge/bin
DEMO := runs/demo
SMOKE := runs/ci-edge

.PHONY: demo test smoke test-arm64 ptb kenlm clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[train,edge,plot,cluster,quantizer,dev]'
	touch $@

# The device's environment: ai-edge-litert and numpy (the `edge` extra), pytest.
$(EDGE_BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv .venv-edge
	$(EDGE_BIN)/pip install --quiet --upgrade pip
	$(EDGE_BIN)/pip install --quiet -e '.[edge,dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python -m pruning.train --schedule polynomial --out $(DEMO) --force
	$(BIN)/python -m convert.to_tflite $(DEMO) --force
	gzip -dc training/corpus/shakespeare.test.txt.gz > $(DEMO)/test.txt
	$(BIN)/python edge_runtime/predict.py suggest --model $(DEMO) --text "to be or not to "
	$(BIN)/python edge_runtime/predict.py suggest --model $(DEMO) --text "my good lo"
	$(BIN)/python edge_runtime/predict.py eval $(DEMO)/test.txt --model $(DEMO)
	$(BIN)/python edge_runtime/predict.py bench --model $(DEMO) --variant all --threads 1

# Penn Treebank into runs/ptb/data (downloaded, md5-checked, never committed); see benchmarks/ptb.py
ptb: $(BIN)/.installed
	$(BIN)/python benchmarks/ptb.py data --dest runs/ptb/data

# KenLM for the n-gram baseline (benchmarks/ngram.py): its query module (the `ngram` extra) and its
# estimator, built from the kenlm source distribution with CMake (needs Boost: see benchmarks/ngram.py)
kenlm: $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[ngram]'
	$(BIN)/python benchmarks/ngram.py build

# pytest in two processes (the CI machine's two cores); each file's tests in one, its fixtures made once
test: $(BIN)/.installed $(EDGE_BIN)/.installed
	$(BIN)/python -m pytest -q -n 2 --dist loadfile
	$(MAKE) smoke
	$(EDGE_BIN)/python edge_runtime/predict.py suggest --model $(SMOKE) --text "to be or not to "
	$(EDGE_BIN)/python edge_runtime/predict.py suggest --model $(SMOKE) --text "my good lo"
	$(EDGE_BIN)/python edge_runtime/predict.py eval $(SMOKE)/sample.txt --model $(SMOKE)
	$(EDGE_BIN)/python edge_runtime/predict.py bench --model $(SMOKE) --variant all --threads 1
	EDGELM_TEST_MODEL=$(SMOKE)/tflite $(EDGE_BIN)/python -m pytest -q tests/edge

# The smoke run: a tiny model trained, converted, and a sample of text to run it on
smoke: $(BIN)/.installed
	$(BIN)/python -m pruning.train --embed 16 --hidden 16 --epochs 1 --vocab-size 2000 \
		--batch-size 64 --out $(SMOKE) --force
	$(BIN)/python -m convert.to_tflite $(SMOKE) --force
	gzip -dc training/corpus/shakespeare.valid.txt.gz | head -300 > $(SMOKE)/sample.txt

# The device runtime on the Raspberry Pi's architecture (aarch64, emulated; needs root): see tests/arm64/run.sh
test-arm64: $(BIN)/.installed $(EDGE_BIN)/.installed
	[ -f $(SMOKE)/sample.txt ] || $(MAKE) smoke
	bash tests/arm64/run.sh

clean:
	rm -rf $(VENV) .venv-edge $(DEMO) $(SMOKE) runs/ci-sweep
