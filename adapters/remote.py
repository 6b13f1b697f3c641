"""The adapter store on an object store (S3): what replicas without a shared disk publish to and serve from.

    store = ObjectAdapterStore(objects, AdapterCache(data_dir / "cache" / "adapters", max_bytes=10 << 30))
    store.publish(name, run_dir / "adapter", job_id=..., step=...)   # same calls as AdapterStore
    store.local_copy(name)   # -> a verified local directory for vLLM's lora_path

Layout under the store's prefix:
    adapters/blobs/{quoted name}/{version}/{file}      the PEFT files of one published version
    adapters/index/{quoted name}.json                  the manifest: metadata, version, each file's sha256
Publishing uploads a new version's files first and its manifest last, so a publisher killed
mid-upload leaves files nobody lists or serves; the previous version's files are removed after
the new manifest is in place. Deleting removes the manifest first.

Replicas materialise a version into `AdapterCache`: one directory per content digest (the sha256
of the manifest's file table), downloaded into staging, each file checked against its sha256,
renamed into place, and bounded on disk by least-recent use. While the object store is
unreachable, adapters this replica has already cached keep serving from their last-read manifest.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, fields
from pathlib import Path
from urllib.parse import quote, unquote

from adapters.atomic import remove_atomically, staged
from adapters.objects import ObjectStore, StorageUnavailable
from adapters.store import (
    META_FILE,
    WEIGHTS_FILE,
    AdapterExists,
    AdapterMeta,
    AdapterNotFound,
    InvalidAdapter,
    StoredFile,
    _read_adapter_config,
    _sha256,
    validate_name,
)

INDEX, BLOBS = "adapters/index", "adapters/blobs"
_META_FIELDS = {f.name for f in fields(AdapterMeta)}


class AdapterCache:
    """Local copies of adapter versions, one directory per content digest, least recently used evicted
    beyond `max_bytes` (the copy in use is never evicted)."""

    def __init__(self, root: Path, max_bytes: int):
        self.root, self.max_bytes = Path(root), max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()

    def path(self, digest: str) -> Path:
        return self.root / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_dir()

    def get(self, digest: str, fill) -> Path:
        """The cached directory of `digest`, made by `fill(staging_dir)` when absent."""
        with self._guard:
            lock = self._locks[digest]
        with lock:
            path = self.path(digest)
            if not path.is_dir():
                with staged(path) as tmp:
                    tmp.mkdir()
                    fill(tmp)
            path.touch()  # its mtime is its last use
        self._evict(keep=digest)
        return path

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def _evict(self, keep: str) -> None:
        entries = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        sizes = {p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for p in entries}
        total = sum(sizes.values())
        for p in sorted(entries, key=lambda p: p.stat().st_mtime):
            if total <= self.max_bytes:
                break
            if p.name != keep:
                remove_atomically(p, self.root)
                total -= sizes[p]


class ObjectAdapterStore:
    """The same interface as `AdapterStore` (publish, metadata, list, exists, delete, local_copy), on objects."""

    def __init__(self, objects: ObjectStore, cache: AdapterCache):
        self.objects, self.cache = objects, cache
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()
        self._seen: dict[str, dict] = {}  # name -> its last-read manifest (serves cached copies while offline)

    def lock(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks[name]

    @staticmethod
    def _index(name: str) -> str:
        return f"{INDEX}/{quote(validate_name(name), safe='')}.json"

    @staticmethod
    def _blobs(name: str) -> str:
        return f"{BLOBS}/{quote(validate_name(name), safe='')}"

    # ---------------------------------------------------------------- write
    def publish(self, name: str, source: str | Path, *, job_id: str | None = None, step: int | None = None,
                replace: bool = False, parent: str | None = None, method: str | None = None,
                project: str | None = None) -> AdapterMeta:
        source = Path(source)
        config = _read_adapter_config(source)
        if not (source / WEIGHTS_FILE).is_file():
            raise InvalidAdapter(f"{source} has no {WEIGHTS_FILE}")
        files = {p.relative_to(source).as_posix(): p for p in sorted(source.rglob("*"))
                 if p.is_file() and p.name != META_FILE}
        with self.lock(name):
            old = self._manifest(name, missing_ok=True)
            if old is not None and not replace:
                raise AdapterExists(f"adapter {name!r} already exists")
            version = f"v{time.time_ns()}-{uuid.uuid4().hex[:8]}"
            table = {}
            for rel, path in files.items():  # the files first ...
                table[rel] = {"sha256": _sha256(path), "size": path.stat().st_size}
                self.objects.put_file(f"{self._blobs(name)}/{version}/{rel}", path)
            meta = AdapterMeta(name=name, base_model=config.get("base_model_name_or_path") or "",
                               rank=int(config.get("r", 0)), job_id=job_id, step=step, created_at=int(time.time()),
                               sha256=table[WEIGHTS_FILE]["sha256"], parent=parent, method=method, project=project)
            manifest = {**asdict(meta), "version": version, "files": table}
            self.objects.put_bytes(self._index(name), json.dumps(manifest).encode())  # ... the manifest last
            self._seen[name] = manifest
            if old is not None:
                self.objects.delete_prefix(f"{self._blobs(name)}/{old['version']}")
        return meta

    def delete(self, name: str) -> None:
        with self.lock(name):
            self._manifest(name)  # AdapterNotFound if there is none
            self.objects.delete(self._index(name))  # unlisted at once, then its files go
            self._seen.pop(name, None)
            self.objects.delete_prefix(self._blobs(name))

    def collect(self, grace_seconds: float) -> list[str]:
        """Delete the files of versions no manifest lists (a publisher killed mid-upload, a version replaced or
        deleted while another server was away) once they are older than `grace_seconds` (a version's age is
        in its name; an upload in progress is younger than the grace); the prefixes deleted. A version a
        manifest lists is never touched: each candidate's manifest is read again, under the name's lock."""
        root = f"{BLOBS}/"
        versions = {tuple(key[len(root):].split("/")[:2]) for key in self.objects.list(BLOBS)}
        now, deleted = time.time_ns(), []
        for quoted, version in sorted(v for v in versions if len(v) == 2):
            try:
                born = int(version.removeprefix("v").split("-")[0])
            except ValueError:
                continue  # not a version this store wrote
            if (now - born) / 1e9 < grace_seconds:
                continue
            name = unquote(quoted)
            with self.lock(name):
                manifest = self._manifest(name, missing_ok=True)
                if manifest is not None and manifest["version"] == version:
                    continue
                self.objects.delete_prefix(f"{root}{quoted}/{version}")
                deleted.append(f"{root}{quoted}/{version}")
        return deleted

    # ---------------------------------------------------------------- read
    def _manifest(self, name: str, missing_ok: bool = False) -> dict | None:
        try:
            manifest = json.loads(self.objects.get_bytes(self._index(name)))
        except FileNotFoundError:
            self._seen.pop(name, None)
            if missing_ok:
                return None
            raise AdapterNotFound(f"adapter {name!r} not found") from None
        except StorageUnavailable:
            seen = self._seen.get(name)
            if seen is not None and self.cache.has(_digest(seen)):
                return seen  # offline: a copy this replica holds keeps serving
            raise
        except ValueError:
            raise InvalidAdapter(f"adapter {name!r} is damaged: its manifest is unreadable") from None
        self._seen[name] = manifest
        return manifest

    def metadata(self, name: str) -> AdapterMeta:
        return _meta(self._manifest(name))

    def exists(self, name: str) -> bool:
        try:
            self._manifest(name)
            return True
        except (AdapterNotFound, InvalidAdapter, ValueError):
            return False

    def list(self) -> list[AdapterMeta]:
        out = []
        for key in self.objects.list(INDEX):
            name = unquote(key[len(INDEX) + 1:].removesuffix(".json"))
            try:
                out.append(self.metadata(name))
            except (AdapterNotFound, InvalidAdapter, ValueError, TypeError):
                continue  # deleted meanwhile, or damaged: reported when it is used
        return sorted(out, key=lambda m: (m.created_at, m.name))

    def verify(self, name: str) -> AdapterMeta:
        """Metadata of an adapter whose local copy matches its manifest's checksums."""
        self.local_copy(name)
        return self.metadata(name)

    def local_copy(self, name: str) -> Path:
        """A local directory of the adapter's current version, downloaded and verified on first use."""
        for attempt in (1, 2):  # a version replaced mid-download: read the manifest again, once
            manifest = self._manifest(name)
            try:
                return self.cache.get(_digest(manifest), lambda tmp: self._download(name, manifest, tmp))
            except FileNotFoundError:
                if attempt == 2:
                    raise InvalidAdapter(f"adapter {name!r} is damaged: files of its manifest are missing") \
                        from None
        raise AssertionError("unreachable")

    def files(self, name: str) -> tuple[AdapterMeta, list[StoredFile]]:
        """The adapter's metadata and files, read from the object store as they are streamed (their checksums
        are the manifest's)."""
        manifest = self._manifest(name)
        prefix = f"{self._blobs(name)}/{manifest['version']}"
        return _meta(manifest), [
            StoredFile(rel, info["size"], info["sha256"],
                       lambda key=f"{prefix}/{rel}": self.objects.iter_bytes(key))
            for rel, info in sorted(manifest["files"].items())]

    def _download(self, name: str, manifest: dict, tmp: Path) -> None:
        for rel, info in manifest["files"].items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            self.objects.download(f"{self._blobs(name)}/{manifest['version']}/{rel}", target)
            if _sha256(target) != info["sha256"]:
                raise InvalidAdapter(f"adapter {name!r} is damaged: {rel} does not match its checksum")


def _meta(manifest: dict) -> AdapterMeta:
    return AdapterMeta(**{k: v for k, v in manifest.items() if k in _META_FIELDS})


def _digest(manifest: dict) -> str:
    """The content address of a version: its files and their checksums."""
    table = "".join(f"{rel}:{info['sha256']}\n" for rel, info in sorted(manifest["files"].items()))
    return hashlib.sha256(table.encode()).hexdigest()
