# The two set-up commands (README): `make serve` and `make test`. Both install .venv first.
.PHONY: install serve demo-train test test-fast docs bench-train bench-train-shape bench-serve bench-reliability bench-scale bench-adapter-load bench-ray bench-batch bench-lora-mix bench-rft bench-scoping openapi gpu-check bench-scale-model

install:
	@scripts/install.sh

# The service on its embedded default: SQLite and adapters under ./data, the tiny model built offline.
serve: install
	.venv/bin/ftserve serve $(ARGS)

demo-train: install
	.venv/bin/ftserve tiny-model data/models/ftserve-tiny
	.venv/bin/ftserve train examples/tiny-sft.yaml

test: install
	@scripts/install.sh clients
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# The fast layer: logic, routes in-process, docs; no engine, no training (under a minute).
test-fast: install
	.venv/bin/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The documentation site on localhost:8000 (mkdocs.yml); `mkdocs build --strict` builds it into site/.
docs: install
	.venv/bin/mkdocs serve

bench-train: install
	.venv/bin/python -m bench.train

# ftserve vs LLaMA-Factory vs TRL at the tiny, ~110 M and 0.5 B shapes (LLaMA-Factory in .venv/llamafactory)
bench-train-shape: install
	@scripts/install.sh llamafactory
	.venv/bin/python -m bench.train --shape tiny 110m 0.5b --repeats 1

openapi: install
	.venv/bin/ftserve openapi -o openapi.yaml

bench-serve: install
	.venv/bin/python -m bench.serve

bench-reliability: install
	.venv/bin/python -m bench.reliability

bench-scale: install
	.venv/bin/python -m bench.scale

bench-adapter-load: install
	.venv/bin/python -m bench.adapter_load

bench-batch: install
	.venv/bin/python -m bench.batch

bench-rft: install
	.venv/bin/python -m bench.train --rft

# eight adapters mixed vs the base at the engine, per --max-loras / --max-lora-rank; --profile needs py-spy
bench-lora-mix: install
	.venv/bin/python -m bench.lora_mix

bench-scoping: install
	.venv/bin/python -m bench.scoping

bench-ray: install
	.venv/bin/python -m bench.ray_training

# A random model of Qwen2.5-0.5B's shape through the whole product on CPU (bench/results/scale_model.json)
bench-scale-model: install
	.venv/bin/python -m bench.scale_model $(ARGS)

# On a machine with an NVIDIA GPU: the whole product at Qwen2.5-0.5B's shape, report in bench/results/gpu-check.json
gpu-check:
	scripts/gpu-check.sh $(ARGS)
