"""The object store seam: where uploaded files, job artifacts and adapters are kept.

    objects = open_objects(None, data_dir)                   # a local directory: the default
    objects = open_objects("s3://bucket/prefix", data_dir)   # S3-compatible storage, through boto3

Keys are relative POSIX paths: `files/file-abc`, `jobs/ftjob-x/spec.json`,
`jobs/ftjob-x/checkpoints/step-10/trainer_state.pt`, `adapters/...`. Each object is written whole
or not at all: the local store stages and renames, an S3 PUT is atomic. S3 credentials, endpoint
and region come from the standard AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL and
AWS_REGION variables (or any other source boto3 reads). A store that cannot be reached raises
`StorageUnavailable`, which the API answers with 503 and Retry-After.

`fetch(key)` gives a local path of an object, which the trainer and vLLM need: the object itself
in a local store; a copy in `cache_dir` (downloaded once, atomically) from S3. Objects under
`files/` and `jobs/` never change once written, so a cached copy never goes stale; adapters,
which a name can be published over, are cached by content in `adapters.remote.AdapterCache`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from adapters.atomic import staged

CHUNK = 1 << 20


class StorageUnavailable(Exception):
    """The object store cannot be reached (or refuses us): retry later."""


class ObjectStore:
    """The interface, and what both stores share."""

    url: str
    cache_dir: Path
    cache_max_bytes: float = float("inf")  # cached copies of uploaded files (`files/`) kept at most

    def cached_files(self) -> list[Path]:
        """The cached copies of uploaded files (none when the store's objects are local files themselves)."""
        root = self.cache_dir / "files"
        if self.local_path("files") is not None or not root.is_dir():
            return []
        return [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]

    def cached_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.cached_files())

    def trim_cache(self, keep: Path | None = None) -> None:
        """Drop the least recently used cached copies of uploaded files beyond `cache_max_bytes` (never `keep`,
        the copy just used). A reader holding one open keeps reading it; the next fetch downloads it again."""
        files = [(p, p.stat()) for p in self.cached_files()]
        total = sum(st.st_size for _, st in files)
        for path, st in sorted(files, key=lambda f: f[1].st_mtime):
            if total <= self.cache_max_bytes:
                break
            if path != keep:
                path.unlink(missing_ok=True)
                total -= st.st_size

    def put_file(self, key: str, path: Path) -> None:
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def get_bytes(self, key: str) -> bytes:
        """The object's content; FileNotFoundError if there is none."""
        raise NotImplementedError

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        """The object's content in chunks (for streaming it to a client)."""
        raise NotImplementedError

    def download(self, key: str, dest: Path) -> None:
        """Write the object to `dest`, atomically; FileNotFoundError if there is none."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def list(self, prefix: str) -> list[str]:
        """Every key under `prefix`, sorted."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove the object; no error if there is none."""
        raise NotImplementedError

    def ping(self) -> bool:
        """The store answers."""
        raise NotImplementedError

    def local_path(self, key: str) -> Path | None:
        """The object's own path when the store is a local directory, else None."""
        return None

    # ---------------------------------------------------------------- shared
    def delete_prefix(self, prefix: str) -> None:
        for key in self.list(prefix):
            self.delete(key)

    def put_tree(self, prefix: str, src: Path, last: str | None = None) -> None:
        """Upload a directory's files under `prefix`; the file named `last` after all others, so that its
        presence means the whole tree is there."""
        if self.local_path(prefix) == src.resolve():
            return  # already in place
        files = sorted((p for p in src.rglob("*") if p.is_file()), key=lambda p: (p.name == last, str(p)))
        for path in files:
            self.put_file(f"{prefix}/{path.relative_to(src).as_posix()}", path)

    def fetch(self, key: str) -> Path:
        """A local path holding the object: its own (local store) or a cached copy (S3)."""
        own = self.local_path(key)
        if own is not None:
            if not own.is_file():
                raise FileNotFoundError(key)
            return own
        path = self.cache_dir / key
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            self.download(key, path)
        else:
            os.utime(path)  # its mtime is its last use
        if key.startswith("files/"):
            self.trim_cache(keep=path)
        return path

    def fetch_tree(self, prefix: str, dest: Path) -> Path:
        """A local copy of every object under `prefix` at `dest` (whole, or absent after an error)."""
        own = self.local_path(prefix)
        if own is not None:
            return own
        if not dest.is_dir():
            dest.parent.mkdir(parents=True, exist_ok=True)
            with staged(dest) as tmp:
                for key in self.list(prefix):
                    target = tmp / key[len(prefix) + 1:]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self.download(key, target)
        return dest

    def fetch_latest_checkpoint(self, prefix: str, dest: Path, marker: str) -> Path | None:
        """A local copy of the highest `step-N` under `prefix` whose `marker` file (written last) is there,
        at `dest/step-N`; None when there is none. A local store's own directory is left where it is."""
        steps = [int(k.split("/")[-2].removeprefix("step-")) for k in self.list(prefix) if k.endswith("/" + marker)]
        if not steps:
            return None
        return self.fetch_tree(f"{prefix}/step-{max(steps)}", dest / f"step-{max(steps)}")

    def forget(self, key: str) -> None:
        """Drop a cached copy (e.g. of a deleted file)."""
        if self.local_path(key) is None:
            (self.cache_dir / key).unlink(missing_ok=True)


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid object key {key!r}")
    return key


class LocalObjects(ObjectStore):
    """Objects as files under a root directory (the data dir by default)."""

    def __init__(self, root: Path, cache_dir: Path | None = None):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = str(self.root)
        self.cache_dir = cache_dir or self.root / "cache"

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        if target == Path(path).resolve():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        with staged(target) as tmp:
            shutil.copyfile(path, tmp)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with staged(target) as tmp:
            tmp.write_bytes(data)

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        with self._path(key).open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def download(self, key: str, dest: Path) -> None:
        with staged(dest) as tmp:
            shutil.copyfile(self._path(key), tmp)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def ping(self) -> bool:
        return self.root.is_dir() and os.access(self.root, os.W_OK)


class S3Objects(ObjectStore):
    """Objects in an S3 bucket under a prefix (`s3://bucket/prefix`), through boto3."""

    def __init__(self, url: str, cache_dir: Path, cache_max_bytes: float = float("inf")):
        import boto3
        from botocore.config import Config

        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"storage URL {url!r}: expected s3://bucket/prefix")
        self.url, self.bucket, self.prefix = url, parsed.netloc, parsed.path.strip("/")
        self.cache_dir, self.cache_max_bytes = Path(cache_dir), cache_max_bytes
        # fail fast when the store is away: the API answers 503 rather than hanging a client
        config = Config(connect_timeout=3, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
        self.client = boto3.client("s3", config=config)
        # a readiness probe answers within its own timeout: one short try
        self._probe = boto3.client("s3", config=Config(connect_timeout=1, read_timeout=2,
                                                       retries={"max_attempts": 1, "mode": "standard"}))

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{_check_key(key)}" if self.prefix else _check_key(key)

    def _call(self, method: str, key: str | None = None, client=None, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(client or self.client, method)(Bucket=self.bucket, **kwargs)
        except ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = e.response.get("Error", {}).get("Code")
            if status == 404 or code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(key or self.bucket) from None
            raise StorageUnavailable(f"the object store refused {method}: {code} ({status})") from None
        except BotoCoreError as e:  # cannot connect, timed out, no credentials
            raise StorageUnavailable(f"the object store is unreachable: {e}") from None

    def put_file(self, key: str, path: Path) -> None:
        with open(path, "rb") as f:
            self._call("put_object", key, Key=self._key(key), Body=f)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call("put_object", key, Key=self._key(key), Body=data)

    def get_bytes(self, key: str) -> bytes:
        body = self._call("get_object", key, Key=self._key(key))["Body"]
        try:
            return body.read()
        except Exception as e:  # noqa: BLE001 - the connection dropped mid-read
            raise StorageUnavailable(f"the object store is unreachable: {e}") from None

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        body = self._call("get_object", key, Key=self._key(key))["Body"]
        yield from body.iter_chunks(CHUNK)

    def download(self, key: str, dest: Path) -> None:
        body = self._call("get_object", key, Key=self._key(key))["Body"]
        try:
            with staged(dest) as tmp, tmp.open("wb") as out:
                for chunk in body.iter_chunks(CHUNK):
                    out.write(chunk)
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 - the connection dropped mid-download
            raise StorageUnavailable(f"the object store is unreachable: {e}") from None

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", key, Key=self._key(key))
            return True
        except FileNotFoundError:
            return False

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix) + "/"
        keys, token = [], None
        while True:
            page = self._call("list_objects_v2", Prefix=full, **({"ContinuationToken": token} if token else {}))
            keys += [o["Key"][len(self.prefix) + 1 if self.prefix else 0:] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = page["NextContinuationToken"]

    def delete(self, key: str) -> None:
        self._call("delete_object", key, Key=self._key(key))

    def ping(self) -> bool:
        try:
            self._call("head_bucket", client=self._probe)
            return True
        except (StorageUnavailable, FileNotFoundError):
            return False


def open_objects(url: str | None, data_dir: Path, cache_dir: Path | None = None,
                 cache_max_bytes: float = float("inf")) -> ObjectStore:
    """The object store a storage URL names: None -> the data dir itself; `s3://bucket/prefix` -> S3 (with at
    most `cache_max_bytes` of uploaded files' copies cached)."""
    if not url:
        return LocalObjects(data_dir, cache_dir)
    if url.startswith("s3://"):
        return S3Objects(url, cache_dir or Path(data_dir) / "cache", cache_max_bytes)
    raise ValueError(f"storage URL {url!r}: expected s3://bucket/prefix (or none for the data dir)")
