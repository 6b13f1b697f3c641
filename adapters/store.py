"""The adapter store: named LoRA adapters on a local (or shared) filesystem.

    store = AdapterStore(data_dir / "adapters")
    store.publish("ft:ftserve-tiny:ftserve:facts:abc123", run_dir / "adapter", job_id="ftjob-abc123", step=100)
    store.resolve("ft:ftserve-tiny:ftserve:facts:abc123")  # -> Path to a PEFT adapter directory

Layout: one directory per adapter, named by the percent-encoded adapter name, holding the
PEFT files plus `ftserve.json` (metadata). Publishing copies into a staging directory under
`.staging/` and renames it into place, so readers see either no adapter or a whole one.
Names are validated and encoded, so none can reach outside the root (`..`, `/`, links).
Writers of the same name are serialised by a lock per name; different names never wait on
each other.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from adapters.atomic import remove_atomically, staged

META_FILE = "ftserve.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,254}$")


class AdapterError(Exception):
    """Base class of adapter store errors."""


class InvalidAdapterName(AdapterError):
    pass


class AdapterNotFound(AdapterError):
    pass


class AdapterExists(AdapterError):
    pass


class InvalidAdapter(AdapterError):
    """The files are not a usable PEFT LoRA adapter."""


@dataclass(frozen=True)
class AdapterMeta:
    name: str
    base_model: str
    rank: int
    job_id: str | None
    step: int | None
    created_at: int
    sha256: str  # of the weights file
    parent: str | None = None  # the fine-tuned model this one was trained on from
    method: str | None = None  # how it was made: supervised, dpo, reinforcement, ... or import
    project: str | None = None  # its owner when no job made it (an imported adapter)


@dataclass(frozen=True)
class StoredFile:
    """One file of a published adapter, readable in chunks without holding it in memory."""
    path: str  # relative, POSIX
    size: int
    sha256: str
    chunks: Callable[[], Iterator[bytes]]


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name or "//" in name or name.endswith("/"):
        raise InvalidAdapterName(
            f"invalid adapter name {name!r}: use letters, digits and . _ : / @ + - (no '..'), at most 255 characters"
        )
    return name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class AdapterStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._staging = self.root / ".staging"
        self._staging.mkdir(exist_ok=True)
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()

    def lock(self, name: str) -> threading.Lock:
        """The lock that serialises changes to one name."""
        with self._locks_guard:
            return self._locks[name]

    def _dir(self, name: str) -> Path:
        path = self.root / quote(validate_name(name), safe="")
        assert path.parent == self.root
        return path

    def publish(
        self, name: str, source: str | Path, *, job_id: str | None = None, step: int | None = None,
        replace: bool = False, parent: str | None = None, method: str | None = None, project: str | None = None,
    ) -> AdapterMeta:
        """Copy the PEFT adapter in `source` into the store under `name`, atomically."""
        source = Path(source)
        config = _read_adapter_config(source)
        if not (source / WEIGHTS_FILE).is_file():
            raise InvalidAdapter(f"{source} has no {WEIGHTS_FILE}")
        target = self._dir(name)
        with self.lock(name):
            if target.exists() and not replace:
                raise AdapterExists(f"adapter {name!r} already exists")
            try:
                with staged(target, self._staging) as staging:  # e.g. a full disk: nothing half-copied
                    shutil.copytree(source, staging, symlinks=False)
                    meta = AdapterMeta(
                        name=name, base_model=config.get("base_model_name_or_path") or "",
                        rank=int(config.get("r", 0)), job_id=job_id, step=step, created_at=int(time.time()),
                        sha256=_sha256(staging / WEIGHTS_FILE), parent=parent, method=method, project=project,
                    )
                    (staging / META_FILE).write_text(json.dumps(asdict(meta)))
            except OSError as e:
                if e.errno == errno.EBUSY:
                    raise AdapterError(str(e)) from None
                raise
        return meta

    def resolve(self, name: str) -> Path:
        """The adapter's directory; raises AdapterNotFound."""
        path = self._dir(name)
        if path.is_symlink() or not (path / META_FILE).is_file():
            raise AdapterNotFound(f"adapter {name!r} not found")
        return path

    def metadata(self, name: str) -> AdapterMeta:
        try:
            return AdapterMeta(**json.loads((self.resolve(name) / META_FILE).read_text()))
        except FileNotFoundError:  # deleted between resolving and reading
            raise AdapterNotFound(f"adapter {name!r} not found") from None

    def exists(self, name: str) -> bool:
        try:
            self.resolve(name)
            return True
        except AdapterError:
            return False

    def list(self) -> list[AdapterMeta]:
        out = []
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith(".") or entry.is_symlink() or not (entry / META_FILE).is_file():
                continue
            try:
                out.append(AdapterMeta(**json.loads((entry / META_FILE).read_text())))
            except (OSError, ValueError, TypeError):
                continue  # a damaged entry is skipped here and reported when it is used
        return sorted(out, key=lambda m: (m.created_at, m.name))

    def delete(self, name: str) -> None:
        target = self._dir(name)
        with self.lock(name):
            if not (target / META_FILE).is_file() or target.is_symlink():
                raise AdapterNotFound(f"adapter {name!r} not found")
            if not remove_atomically(target, self._staging):  # another process deleted it first
                raise AdapterNotFound(f"adapter {name!r} not found")

    def verify(self, name: str) -> AdapterMeta:
        """Metadata of an adapter whose weights still match their recorded checksum. An adapter replaced
        while it is read is read again (a damaged one stays damaged however often it is read); one deleted
        meanwhile is not found."""
        for attempt in range(5):
            meta = self.metadata(name)  # AdapterNotFound once it is gone
            try:
                return self._verify(name, meta)
            except InvalidAdapter:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _verify(self, name: str, meta: AdapterMeta) -> AdapterMeta:
        path = self.resolve(name)
        try:
            _read_adapter_config(path)
            digest = _sha256(path / WEIGHTS_FILE)
        except InvalidAdapter as e:  # said again by name: the store's directory is not the client's business
            raise InvalidAdapter(f"adapter {name!r} is damaged: " + str(e).replace(str(path), "its folder")) from None
        except FileNotFoundError:
            raise InvalidAdapter(f"adapter {name!r} is damaged: its weights file is missing") from None
        except OSError as e:
            raise InvalidAdapter(f"adapter {name!r} is damaged: {e.strerror}") from None
        if digest != meta.sha256:
            raise InvalidAdapter(f"adapter {name!r} is damaged: its weights do not match their checksum")
        return meta

    def files(self, name: str) -> tuple[AdapterMeta, list[StoredFile]]:
        """The adapter's metadata and PEFT files (its weights verified against their checksum first). Each
        file is opened here, so a version published over this one meanwhile does not mix into the read."""
        meta = self.verify(name)
        path, out = self.resolve(name), []
        for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name != META_FILE):
            handle = file.open("rb")
            rel = file.relative_to(path).as_posix()
            digest = meta.sha256 if rel == WEIGHTS_FILE else _sha256(file)
            out.append(StoredFile(rel, os.fstat(handle.fileno()).st_size, digest, _reader(handle)))
        return meta, out

    def local_copy(self, name: str) -> Path:
        """The adapter's directory, once its weights are verified (what vLLM loads)."""
        self.verify(name)
        return self.resolve(name)


def _reader(handle) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        with handle:
            while chunk := handle.read(1 << 20):
                yield chunk
    return chunks


def _read_adapter_config(path: Path) -> dict:
    try:
        config = json.loads((path / "adapter_config.json").read_text())
    except FileNotFoundError:
        raise InvalidAdapter(f"{path} has no adapter_config.json") from None
    except (OSError, ValueError) as e:
        raise InvalidAdapter(f"{path}/adapter_config.json is unreadable: {e}") from None
    if config.get("peft_type") != "LORA":
        raise InvalidAdapter(f"{path} is not a LoRA adapter (peft_type {config.get('peft_type')!r})")
    return config

