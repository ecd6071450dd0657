# The README's two commands: `make demo` (synthesis with the bundled default model) and
# `make test` (the test suite). Each creates .venv and installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.valle2-installed
TEXT ?= Hello! This sentence was never recorded: valle2 spoke it in the voice of the prompt.
OUT ?= out/demo.wav
DEMO := src/valle2/assets/voices/demo

.PHONY: demo test install system-deps clean-venv

# Speech engines and audio tools the tests use for real speech and codecs (corpus builder,
# watermark robustness to MP3/Opus, consent with a spoken challenge). Installed from Debian when
# missing and we may (root + apt-get); otherwise the tests that need them skip, saying why.
SYSTEM_PKGS := espeak-ng flite festival festvox-kallpc16k festvox-us-slt-hts sox ffmpeg lame opus-tools
SYSTEM_TOOLS := espeak-ng flite festival sox ffmpeg lame opusenc

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			echo "installing system tools:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PKGS) >/dev/null; \
		else echo "note: missing system tools:$$missing (tests that need them will skip)"; fi; \
	fi

demo: $(STAMP)
	@mkdir -p $(dir $(OUT))
	$(VENV)/bin/valle2 synthesize --model default --prompt $(DEMO)/prompt.wav \
		--prompt-text "$$(cat $(DEMO)/prompt.txt)" --text "$(TEXT)" --out $(OUT) --seed 0

test: $(STAMP) system-deps
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
