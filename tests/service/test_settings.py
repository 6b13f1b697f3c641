"""The base model's served name: as vLLM's --served-model-name, else the model directory's name."""

from service.settings import Settings


def test_served_model_name_defaults_to_the_directory_name(tmp_path):
    model = tmp_path / "models" / "Qwen2.5-0.5B-Instruct"
    model.mkdir(parents=True)
    assert Settings(model=str(model)).base_model_name == "Qwen2.5-0.5B-Instruct"
    assert Settings(model=str(model) + "/").base_model_name == "Qwen2.5-0.5B-Instruct"


def test_a_relative_path_is_named_by_its_last_part(tmp_path, monkeypatch):
    (tmp_path / "some" / "dir").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert Settings(model="./some/dir").base_model_name == "dir"
    assert Settings(model="some/dir").base_model_name == "dir"


def test_a_hub_style_id_stays_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Settings(model="Qwen/Qwen2.5-0.5B").base_model_name == "Qwen/Qwen2.5-0.5B"


def test_the_flag_wins_and_the_tiny_model_is_ftserve_tiny(tmp_path):
    assert Settings(model=str(tmp_path), served_model_name="base").base_model_name == "base"
    assert Settings().base_model_name == "ftserve-tiny"
