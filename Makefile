# The two set-up commands (README): `make serve` and `make test`. Both install .venv first.
.PHONY: install serve test bench-train lint

install:
	@scripts/install.sh

serve: install
	.venv/bin/ftserve serve $(ARGS)

test: install
	.venv/bin/python -m pytest $(PYTEST_ARGS)

bench-train: install
	.venv/bin/python bench/train.py
