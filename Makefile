# wsseg: `make demo` runs the main job, `make test` the test suite; both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.wsseg-setup-done
SETUP_INPUTS := requirements.txt scripts/setup.sh setup.py setup.cfg package.xml \
	training/pyproject.toml export/pyproject.toml training/wsseg_training/annotate/web/package-lock.json

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): $(SETUP_INPUTS)
	VENV=$(VENV) bash scripts/setup.sh
	touch $@

demo: setup
	$(VENV)/bin/wsseg demo --out runs/demo

test: setup
	$(PY) -m pytest || [ $$? -eq 5 ]  # 5 = no test collected

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) bench/backbone.py --quick

clean:
	rm -rf runs ros2_ws/build ros2_ws/install ros2_ws/log
