import pytest

from trainer.config import ConfigError, TrainConfig, template_mismatch

REQUIRED = {"model_name_or_path": "m", "dataset": "d.jsonl", "output_dir": "out"}

# The LLaMA-Factory config from the field notes, less `template` (the model's own template is used).
LLAMA_FACTORY_YAML = """\
model_name_or_path: Qwen/Qwen2.5-0.5B
stage: sft            # pt (continued pre-training) | sft
finetuning_type: lora
dataset: conversations.jsonl
cutoff_len: 1024
per_device_train_batch_size: 2
gradient_accumulation_steps: 2
learning_rate: 1.0e-5
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
max_steps: 500
logging_steps: 1
save_steps: 20000
seed: 1234
lora_target: q_proj,v_proj
output_dir: saves/qwen2.5_0.5b
"""


def test_llama_factory_yaml_is_accepted(tmp_path):
    (tmp_path / "conversations.jsonl").write_text("")
    path = tmp_path / "c.yaml"
    path.write_text(LLAMA_FACTORY_YAML)
    cfg = TrainConfig.from_file(path)
    assert cfg.dtype == "bfloat16" and cfg.lora_target == ["q_proj", "v_proj"]
    assert cfg.learning_rate == 1e-5 and cfg.max_steps == 500 and cfg.cutoff_len == 1024
    assert cfg.dataset == str(tmp_path / "conversations.jsonl")  # relative to the config file
    assert cfg.output_dir == str(tmp_path / "saves" / "qwen2.5_0.5b")
    assert cfg.served_model_name == "Qwen/Qwen2.5-0.5B"


@pytest.mark.parametrize("extra,param,message", [
    ({"learning_rte": 1e-4}, "learning_rte", "learning_rte: unknown key (did you mean 'learning_rate'?)"),
    ({"lora_rnak": 8}, "lora_rnak", "did you mean 'lora_rank'?"),
    ({"report_to": "wandb"}, "report_to", "'wandb' is not available here"),
    ({"use_dora": True}, "use_dora", "vLLM does not support DoRA"),
    ({"pissa_init": True}, "pissa_init", "PiSSA is not supported yet"),
    ({"do_train": False}, "do_train", "always trains"),
    ({"bf16": True, "fp16": True}, None, "either bf16 or fp16"),
    ({"lora_r": 8}, "lora_r", "'lora_rank'"),
    ({"learning_rate": "fast"}, "learning_rate", "valid number"),
    ({"learning_rate": -1}, "learning_rate", "greater than 0"),
    ({"stage": "rm"}, "stage", "stage 'rm' (a reward model) is not supported"),
    ({"stage": "ppo"}, "stage", "stage 'ppo' is not supported"),
    ({"stage": "orpo"}, "stage", "'sft', 'pt', 'dpo', 'kto' or 'grpo'"),
    ({"stage": "grpo"}, None, "stage grpo needs a grader and a rollout_url"),
    ({"stage": "dpo", "pref_loss": "hinge"}, "pref_loss", "'hinge' is not supported yet; the supported preference losses are sigmoid, ipo, orpo, simpo"),
    ({"stage": "dpo", "pref_loss": "sigmoidal"}, "pref_loss", "unknown preference loss 'sigmoidal'"),
    ({"stage": "dpo", "pref_beta": 0}, "pref_beta", "greater than 0"),
    ({"lr_scheduler_type": "cosine_with_restarts"}, "lr_scheduler_type", "'cosine', 'linear' or 'constant'"),
    ({"lora_target": []}, "lora_target", "non-empty"),
    ({"val_size": 0.1, "eval_dataset": "v.jsonl"}, None, "either eval_dataset or val_size"),
])
def test_invalid_keys_and_values_name_the_key(extra, param, message):
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_mapping({**REQUIRED, **extra})
    assert e.value.param == param
    assert message in str(e.value)


def test_missing_required_key():
    with pytest.raises(ConfigError, match="dataset: Field required"):
        TrainConfig.from_mapping({"model_name_or_path": "m", "output_dir": "o"})


def test_every_field_has_a_docstring():
    for name, field in TrainConfig.__pydantic_fields__.items():
        assert field.description, name


# The keys of LLaMA-Factory's LoRA SFT example (examples/train_lora/qwen3_lora_sft.yaml), with our paths.
LLAMA_FACTORY_EXAMPLE_KEYS = """\
model_name_or_path: {model}
trust_remote_code: true
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all
dataset: {dataset}
template: qwen3_nothink
cutoff_len: 2048
max_samples: 1000
preprocessing_num_workers: 16
dataloader_num_workers: 4
output_dir: saves/qwen3-4b/lora/sft
logging_steps: 10
save_steps: 500
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: none
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
resume_from_checkpoint: null
"""


def test_every_key_of_llamafactory_s_lora_example_is_accepted(tmp_path):
    (tmp_path / "identity.json").write_text("[]")
    path = tmp_path / "qwen3_lora_sft.yaml"
    path.write_text(LLAMA_FACTORY_EXAMPLE_KEYS.format(model="m", dataset="identity.json"))
    cfg = TrainConfig.from_file(path)
    assert (cfg.max_samples, cfg.template, cfg.trust_remote_code, cfg.overwrite_output_dir) == (
        1000, "qwen3_nothink", True, True)
    assert cfg.dtype == "bfloat16" and cfg.lora_target == "all-linear" and cfg.resume_from_checkpoint is None


def test_two_typos_and_an_unsupported_value_are_reported_in_one_run():
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_mapping({**REQUIRED, "lerning_rate": 1e-4, "lora_rnak": 8, "stage": "rm"})
    message = str(e.value)
    assert "lerning_rate: unknown key (did you mean 'learning_rate'?)" in message
    assert "lora_rnak: unknown key (did you mean 'lora_rank'?)" in message
    assert "stage: stage 'rm' (a reward model) is not supported" in message


@pytest.mark.parametrize("template, model_type, warns", [
    (None, "qwen2", False), ("qwen", "qwen2", False), ("qwen3_nothink", "qwen3", False), ("qwen3", "qwen2", False),
    ("llama3", "llama", False), ("chatml", "qwen2", False), ("empty", "llama", False),
    ("llama3", "qwen2", True), ("mistral", "qwen2", True), ("gemma", "llama", True),
])
def test_a_template_of_another_family_is_warned_about(template, model_type, warns):
    assert (template_mismatch(template, model_type) is not None) is warns
