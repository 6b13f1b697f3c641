"""The benchmarks' own arithmetic (fast): what a FLOP figure counts, and how a profile is split."""

from transformers import Qwen2Config

from bench.lora_mix import categorize
from bench.train_shape import SHAPES, matmul_params


def test_the_flop_count_takes_every_matmul_weight_of_the_0_5b_shape_and_lm_head(tmp_path):
    Qwen2Config(vocab_size=5710, tie_word_embeddings=True, **SHAPES["0.5b"]["config"]).save_pretrained(tmp_path)
    hidden, kv, inter, layers = 896, 2 * 64, 4864, 24
    per_layer = 2 * hidden * hidden + 2 * kv * hidden + 3 * hidden * inter  # q, o; k, v; gate, up, down
    assert matmul_params(tmp_path) == layers * per_layer + 5710 * hidden  # lm_head counts though it is tied
    assert 355e6 < layers * per_layer < 360e6  # Qwen2.5-0.5B's non-embedding parameters, less norms and biases


def test_a_profile_is_split_by_the_first_category_its_stack_falls_in():
    raw = "\n".join([
        "run (model_runner.py:10);forward (base_linear.py:5);add_lora_linear (punica_cpu.py:40);"
        "bgmv_shrink (lora_ops.py:70) 30",
        "run (model_runner.py:10);forward (base_linear.py:5);apply (layers/linear.py:20);at::native::addmm 50",
        "run (model_runner.py:10);forward (attention/layer.py:3) 10",
        "run (model_runner.py:10);prepare_inputs (model_runner.py:99) 10",
        "poll (shm_broadcast.py:1);idle 500",  # a thread waiting is not time spent
    ])
    split = categorize(raw)
    assert split["vLLM's CPU LoRA ops (punica_cpu, lora_ops)"] == 0.3
    assert split["base linear layers"] == 0.5
    assert split["attention"] == 0.1
    assert split["the rest (model runner, input preparation, scheduling glue)"] == 0.1
    assert abs(sum(split.values()) - 1) < 1e-9
