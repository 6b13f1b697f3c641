import json
import threading

import pytest

from adapters import AdapterExists, AdapterNotFound, AdapterStore, InvalidAdapter, InvalidAdapterName


def _adapter(path, rank=8, base="ftserve-tiny", weights=b"weights"):
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank,
                                                          "base_model_name_or_path": base}))
    (path / "adapter_model.safetensors").write_bytes(weights)
    return path


@pytest.fixture
def store(tmp_path):
    return AdapterStore(tmp_path / "store")


def test_publish_resolve_list_delete(store, tmp_path):
    src = _adapter(tmp_path / "a")
    meta = store.publish("ft:ftserve-tiny:org:x:abc", src, job_id="ftjob-1", step=10)
    assert (meta.base_model, meta.rank, meta.job_id, meta.step) == ("ftserve-tiny", 8, "ftjob-1", 10)
    assert len(meta.sha256) == 64
    path = store.resolve("ft:ftserve-tiny:org:x:abc")
    assert (path / "adapter_model.safetensors").read_bytes() == b"weights"
    assert path.parent == store.root
    assert [m.name for m in store.list()] == ["ft:ftserve-tiny:org:x:abc"]
    with pytest.raises(AdapterExists):
        store.publish("ft:ftserve-tiny:org:x:abc", src)
    store.delete("ft:ftserve-tiny:org:x:abc")
    with pytest.raises(AdapterNotFound):
        store.resolve("ft:ftserve-tiny:org:x:abc")
    assert store.list() == []


def test_names_with_slashes_stay_inside_the_store(store, tmp_path):
    store.publish("ft:Qwen/Qwen2.5-0.5B:org::abc", _adapter(tmp_path / "a"))
    assert store.resolve("ft:Qwen/Qwen2.5-0.5B:org::abc").parent == store.root


@pytest.mark.parametrize("name", ["..", "../x", "a/../../b", "/etc/passwd", ".hidden", "", "a b", "x" * 300,
                                  "a//b", "trailing/", "semi;colon"])
def test_invalid_names_are_rejected(store, tmp_path, name):
    with pytest.raises(InvalidAdapterName):
        store.publish(name, _adapter(tmp_path / "a"))
    with pytest.raises(InvalidAdapterName):
        store.resolve(name)


def test_a_symlink_planted_in_the_store_is_not_followed(store, tmp_path):
    outside = _adapter(tmp_path / "outside")
    (outside / "ftserve.json").write_text("{}")
    (store.root / "evil").symlink_to(outside)
    with pytest.raises(AdapterNotFound):
        store.resolve("evil")
    assert store.list() == []


def test_not_an_adapter_is_refused_and_nothing_is_left_behind(store, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter_config.json").write_text(json.dumps({"peft_type": "PREFIX_TUNING"}))
    with pytest.raises(InvalidAdapter, match="not a LoRA adapter"):
        store.publish("x", bad)
    with pytest.raises(InvalidAdapter, match="no adapter_config.json"):
        store.publish("x", tmp_path)
    assert store.list() == [] and not list((store.root / ".staging").iterdir())


def test_damaged_weights_are_detected(store, tmp_path):
    store.publish("a", _adapter(tmp_path / "a"))
    store.publish("b", _adapter(tmp_path / "b"))
    (store.resolve("a") / "adapter_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(InvalidAdapter, match="do not match their checksum"):
        store.verify("a")
    assert store.verify("b").name == "b"


def test_replace_is_atomic_for_readers(store, tmp_path):
    store.publish("m", _adapter(tmp_path / "v1", weights=b"one"))
    seen, stop = set(), threading.Event()

    def read():
        while not stop.is_set():
            try:
                seen.add((store.resolve("m") / "adapter_model.safetensors").read_bytes())
            except (AdapterNotFound, FileNotFoundError):
                seen.add(b"<missing>")

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(30):
        store.publish("m", _adapter(tmp_path / f"v{i + 2}", weights=b"two" if i % 2 else b"one"), replace=True)
    stop.set()
    reader.join()
    assert seen <= {b"one", b"two", b"<missing>"}  # never a partial file
    assert (store.resolve("m") / "adapter_model.safetensors").read_bytes() in (b"one", b"two")


def test_concurrent_publish_and_delete_of_one_name(store, tmp_path):
    src = _adapter(tmp_path / "src")
    errors = []

    def publish():
        for _ in range(20):
            try:
                store.publish("same", src, replace=True)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

    def delete():
        for _ in range(20):
            try:
                store.delete("same")
            except AdapterNotFound:
                pass
            except Exception as e:  # noqa: BLE001
                errors.append(e)

    threads = [threading.Thread(target=f) for f in (publish, delete, publish, delete)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    listed = store.list()
    if listed:  # the last writer published: the listing is that one whole adapter
        assert listed == [store.metadata("same")]
        store.verify("same")
    else:  # the last writer deleted: nothing is left behind under the name
        assert not store.exists("same")
    assert not list((store.root / ".staging").iterdir())
