# The README's two commands: `make demo` (synthesis with the bundled default model) and
# `make test` (the test suite). Each creates .venv and installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.valle2-installed
TEXT ?= Hello! This sentence was never recorded: valle2 spoke it in the voice of the prompt.
OUT ?= out/demo.wav
DEMO := src/valle2/assets/voices/demo

.PHONY: demo test install clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@mkdir -p $(dir $(OUT))
	$(VENV)/bin/valle2 synthesize --model default --prompt $(DEMO)/prompt.wav \
		--prompt-text "$$(cat $(DEMO)/prompt.txt)" --text "$(TEXT)" --out $(OUT) --seed 0

test: $(STAMP)
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
