"""The object store seam (a local directory, and S3 on a real SeaweedFS server) and the adapter store on it."""

import json
import os

import pytest

from adapters import AdapterCache, AdapterNotFound, InvalidAdapter, ObjectAdapterStore, StorageUnavailable
from adapters.objects import LocalObjects, open_objects
from tests.support.seaweedfs import SeaweedS3


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = SeaweedS3(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture(params=["local", "s3"])
def objects(request, tmp_path):
    if request.param == "local":
        return LocalObjects(tmp_path / "root", tmp_path / "cache")
    s3 = request.getfixturevalue("s3")
    for key, value in s3.env.items():
        request.getfixturevalue("monkeypatch").setenv(key, value)
    return open_objects(s3.url(tmp_path.name), tmp_path, tmp_path / "cache")


def _adapter(path, weights: bytes = b"weights", rank: int = 8):
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": rank, "base_model_name_or_path": "ftserve-tiny"}))
    (path / "adapter_model.safetensors").write_bytes(weights)
    return path


def test_objects_round_trip(objects, tmp_path):
    objects.put_bytes("files/a", b"alpha")
    (tmp_path / "b").write_bytes(b"beta" * 1000)
    objects.put_file("files/sub/b", tmp_path / "b")
    assert objects.get_bytes("files/a") == b"alpha"
    assert b"".join(objects.iter_bytes("files/sub/b")) == b"beta" * 1000
    assert objects.list("files") == ["files/a", "files/sub/b"] and objects.list("nothing") == []
    assert objects.exists("files/a") and not objects.exists("files/c")
    assert objects.fetch("files/sub/b").read_bytes() == b"beta" * 1000
    with pytest.raises(FileNotFoundError):
        objects.get_bytes("files/c")
    with pytest.raises(FileNotFoundError):
        objects.fetch("files/c")
    objects.delete_prefix("files/sub")
    objects.delete("files/none")  # no error
    assert objects.list("files") == ["files/a"] and objects.ping()
    for bad in ("../x", "/abs", "a//b", ""):
        with pytest.raises(ValueError):
            objects.put_bytes(bad, b"")


def test_a_tree_is_stored_with_its_marker_last_and_fetched_whole(objects, tmp_path):
    src = tmp_path / "ckpt"
    (src / "nested").mkdir(parents=True)
    for name in ("trainer_state.pt", "adapter_model.safetensors", "nested/x"):
        (src / name).write_text(name)
    objects.put_tree("jobs/j/checkpoints/step-3", src, last="trainer_state.pt")
    copy = objects.fetch_tree("jobs/j/checkpoints/step-3", tmp_path / "copy")
    assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()) == \
        ["adapter_model.safetensors", "nested/x", "trainer_state.pt"]
    assert (copy / "nested" / "x").read_text() == "nested/x"


def test_an_unreachable_store_raises_storage_unavailable(tmp_path, monkeypatch):
    for key, value in {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "k",
                       "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    objects = open_objects("s3://nowhere/p", tmp_path)
    assert not objects.ping()
    with pytest.raises(StorageUnavailable):
        objects.put_bytes("files/a", b"x")
    with pytest.raises(StorageUnavailable):
        objects.list("files")


@pytest.fixture
def store(s3, tmp_path, monkeypatch):
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    objects = open_objects(s3.url(tmp_path.name), tmp_path, tmp_path / "cache")
    return ObjectAdapterStore(objects, AdapterCache(tmp_path / "cache" / "adapters", 1 << 20))


def test_publish_list_copy_replace_and_delete(store, tmp_path):
    meta = store.publish("ft:x:a", _adapter(tmp_path / "a"), job_id="ftjob-1", step=5)
    assert (meta.rank, meta.job_id, meta.step, meta.base_model) == (8, "ftjob-1", 5, "ftserve-tiny")
    assert [m.name for m in store.list()] == ["ft:x:a"] and store.exists("ft:x:a")
    copy = store.local_copy("ft:x:a")
    assert (copy / "adapter_model.safetensors").read_bytes() == b"weights"
    assert store.verify("ft:x:a") == meta
    with pytest.raises(Exception, match="already exists"):
        store.publish("ft:x:a", _adapter(tmp_path / "a"))
    new = store.publish("ft:x:a", _adapter(tmp_path / "b", b"other"), replace=True)
    assert new.sha256 != meta.sha256
    assert (store.local_copy("ft:x:a") / "adapter_model.safetensors").read_bytes() == b"other"
    assert len({k.split("/")[3] for k in store.objects.list(store._blobs("ft:x:a"))}) == 1  # old version gone
    store.delete("ft:x:a")
    assert store.list() == [] and store.objects.list("adapters") == []
    with pytest.raises(AdapterNotFound):
        store.local_copy("ft:x:a")
    with pytest.raises(AdapterNotFound):
        store.delete("ft:x:a")


def test_orphaned_versions_are_collected_after_the_grace_and_listed_ones_never(store, tmp_path):
    """A publisher killed mid-upload leaves a version's files and no manifest; a deleted model's files may be
    left by a server that died while deleting them. Past the grace period they go; younger ones (an upload
    in progress) and every version a manifest lists stay, and each listed adapter still verifies."""
    import time as clock
    import uuid

    kept = [store.publish(f"ft:x:{n}", _adapter(tmp_path / n, n.encode())) for n in ("a", "b")]
    weights = _adapter(tmp_path / "orphan", b"half") / "adapter_model.safetensors"
    old = f"v{clock.time_ns() - 7200 * 10**9}-{uuid.uuid4().hex[:8]}"  # two hours ago
    young = f"v{clock.time_ns()}-{uuid.uuid4().hex[:8]}"
    for name, version in (("ft:x:a", old), ("ft:x:gone", old), ("ft:x:b", young)):
        store.objects.put_file(f"{store._blobs(name)}/{version}/adapter_model.safetensors", weights)
    deleted = store.collect(grace_seconds=3600)
    assert sorted(deleted) == sorted(f"{store._blobs(n)}/{old}" for n in ("ft:x:a", "ft:x:gone"))
    assert store.objects.list(store._blobs("ft:x:gone")) == []
    assert any(young in key for key in store.objects.list(store._blobs("ft:x:b")))  # too young to tell
    for meta in kept:
        assert store.verify(meta.name) == meta  # the listed versions are whole
    assert store.collect(grace_seconds=0) == [f"{store._blobs('ft:x:b')}/{young}"]  # once past its grace
    assert [m.name for m in store.list()] == ["ft:x:a", "ft:x:b"]
    assert all(store.verify(m.name) for m in kept)


def test_a_damaged_object_is_caught_before_it_is_cached(store, tmp_path):
    store.publish("ft:x:damaged", _adapter(tmp_path / "a"))
    key = next(k for k in store.objects.list(store._blobs("ft:x:damaged")) if k.endswith(".safetensors"))
    store.objects.put_bytes(key, b"tampered")
    with pytest.raises(InvalidAdapter, match="checksum"):
        store.local_copy("ft:x:damaged")
    assert not [p for p in store.cache.root.iterdir() if not p.name.startswith(".")]  # nothing half-cached


def test_the_cache_keeps_within_its_bound_least_recently_used_first(store, tmp_path):
    for i in range(4):  # each ~300 KB against a 1 MiB cache
        store.publish(f"ft:x:{i}", _adapter(tmp_path / str(i), os.urandom(300_000)))
        store.local_copy(f"ft:x:{i}")
    assert store.cache.size() <= store.cache.max_bytes
    cached = {p.name for p in store.cache.root.iterdir()}
    digests = {i: store.local_copy(f"ft:x:{i}").name for i in (3,)}
    assert digests[3] in cached and len(cached) == 3  # the oldest went


def test_cached_adapters_keep_serving_while_the_store_is_away(s3, store, tmp_path):
    store.publish("ft:x:cached", _adapter(tmp_path / "a"))
    store.publish("ft:x:never-loaded", _adapter(tmp_path / "b", b"b"))
    copy = store.local_copy("ft:x:cached")
    s3.stop()
    try:
        assert store.local_copy("ft:x:cached") == copy and store.metadata("ft:x:cached").name == "ft:x:cached"
        with pytest.raises(StorageUnavailable):
            store.local_copy("ft:x:never-loaded")
        with pytest.raises(StorageUnavailable):
            store.publish("ft:x:new", _adapter(tmp_path / "c"))
    finally:
        s3.start()
    assert (store.local_copy("ft:x:never-loaded") / "adapter_model.safetensors").read_bytes() == b"b"
