# The two set-up commands (README): `make serve` and `make test`. Both install .venv first.
.PHONY: install serve test bench-train lint

install:
	@scripts/install.sh

# Until the HTTP service lands, `make serve` runs the demo recipe: build the tiny model, fine-tune it.
serve: install
	.venv/bin/ftserve tiny-model data/models/ftserve-tiny
	.venv/bin/ftserve train examples/tiny-sft.yaml

test: install
	.venv/bin/python -m pytest $(PYTEST_ARGS)

bench-train: install
	.venv/bin/python bench/train.py
