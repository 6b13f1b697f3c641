"""Adapter archives: a published adapter streamed out as a tar, and an uploaded PEFT archive read in safely.

Out: `tar_stream` writes a plain (uncompressed) tar as it reads the files, so an adapter of any size
goes from the object store to the client in 1 MiB pieces; its length is known up front (`tar_length`),
and each file's sha256 is checked as it passes (a mismatch ends the stream: the client never gets a
whole archive with damaged weights).

In: `read_archive` opens a tar (plain or compressed) or zip upload without extracting it, refuses
anything unsafe before a byte is written (absolute paths, `..`, links and devices, pickle checkpoints,
more members or bytes than allowed), then copies out just the adapter's two files.
"""

from __future__ import annotations

import hashlib
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from adapters import StoredFile
from service.errors import APIError, Kind

BLOCK = 512
CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
MAX_MEMBERS = 256
MAX_CONFIG_BYTES = 1 << 20


# ---------------------------------------------------------------------------------------------- out
def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def tar_length(files: list[StoredFile], manifest: bytes) -> int:
    """The exact length of `tar_stream`'s output: a header and padded data per member, two zero blocks."""
    return BLOCK + _padded(len(manifest)) + sum(BLOCK + _padded(f.size) for f in files) + 2 * BLOCK


def _header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def tar_stream(files: list[StoredFile], manifest_name: str, manifest: bytes, mtime: int) -> Iterator[bytes]:
    """The manifest first, then each file, read in pieces and checked against its sha256."""
    yield _header(manifest_name, len(manifest), mtime) + manifest + b"\0" * (_padded(len(manifest)) - len(manifest))
    for file in files:
        yield _header(file.path, file.size, mtime)
        digest, sent = hashlib.sha256(), 0
        for chunk in file.chunks():
            digest.update(chunk)
            sent += len(chunk)
            yield chunk
        if sent != file.size or digest.hexdigest() != file.sha256:  # ends the response mid-body
            raise OSError(f"{file.path} does not match its recorded size and sha256")
        yield b"\0" * (_padded(file.size) - file.size)
    yield b"\0" * (2 * BLOCK)


# ---------------------------------------------------------------------------------------------- in
def _bad(message: str, code: str, kind: Kind = Kind.INVALID_REQUEST) -> APIError:
    return APIError(kind, message, param="file_id", code=code)


@dataclass(frozen=True)
class _Member:
    name: str
    size: int
    regular: bool
    open: Callable[[], object]  # a binary file object of its content


def _tar_members(tar: tarfile.TarFile) -> list[_Member]:
    return [_Member(m.name, m.size, m.isreg() or m.isdir(), lambda m=m: tar.extractfile(m)) for m in tar]


def _zip_members(zf: zipfile.ZipFile) -> list[_Member]:
    out = []
    for info in zf.infolist():
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 where the zip tool records no Unix type
        special = kind not in (0, stat.S_IFREG, stat.S_IFDIR)
        out.append(_Member(info.filename, info.file_size, not special, lambda info=info: zf.open(info)))
    return out


def _check_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if (not name or name.startswith(("/", "\\")) or "\\" in name or (len(name) > 1 and name[1] == ":")
            or ".." in path.parts):
        raise _bad(f"The archive member {name!r} has an absolute path or '..': it is refused (nothing was "
                   "extracted).", "unsafe_archive_member")
    return path


def read_archive(path: Path, dest: Path, max_bytes: int) -> Path:
    """Copy the adapter's `adapter_config.json` and `adapter_model.safetensors` out of the uploaded
    archive at `path` into `dest`, after every member passed the checks; returns `dest`."""
    if zipfile.is_zipfile(path):
        opened, members_of = zipfile.ZipFile(path), _zip_members
    else:
        try:
            opened, members_of = tarfile.open(path, "r:*"), _tar_members
        except (tarfile.TarError, OSError, EOFError):
            raise _bad("The file is not an adapter archive: expected a .tar, .tar.gz or .zip of a PEFT adapter "
                       f"folder ({CONFIG} and {WEIGHTS}).", "invalid_adapter_archive") from None
    with opened:
        try:
            members = members_of(opened)
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as e:
            raise _bad(f"The adapter archive is damaged: {e}.", "invalid_adapter_archive") from None
        if len(members) > MAX_MEMBERS:
            raise _bad(f"The archive has {len(members)} members; at most {MAX_MEMBERS} are accepted.",
                       "adapter_too_large", Kind.TOO_LARGE)
        files: dict[PurePosixPath, _Member] = {}
        for member in members:
            name = _check_name(member.name)
            if not member.regular:
                raise _bad(f"The archive member {member.name!r} is a link or a device: only files are accepted.",
                           "unsafe_archive_member")
            if name.suffix in PICKLE_SUFFIXES:
                raise _bad(f"The archive holds {member.name!r}, a pickle checkpoint: it is refused and never "
                           f"unpickled. Save the adapter with safetensors ({WEIGHTS}; peft's save_pretrained "
                           "does by default).", "pickle_not_allowed")
            files[name] = member
        total = sum(m.size for m in files.values())
        if total > max_bytes:
            raise _bad(f"The archive unpacks to {total} bytes; the limit is {max_bytes} bytes "
                       "(the server's --max-adapter-bytes).", "adapter_too_large", Kind.TOO_LARGE)
        configs = [p for p in files if p.name == CONFIG]
        if len(configs) != 1:
            raise _bad(f"The archive must hold exactly one {CONFIG} (found {len(configs)}).", "invalid_adapter")
        folder = configs[0].parent
        weights = folder / WEIGHTS
        if weights not in files:
            raise _bad(f"The archive has no {WEIGHTS} beside its {CONFIG}.", "invalid_adapter")
        if files[configs[0]].size > MAX_CONFIG_BYTES:
            raise _bad(f"{CONFIG} is larger than {MAX_CONFIG_BYTES} bytes.", "invalid_adapter_config")
        dest.mkdir(parents=True, exist_ok=True)
        for source, target in ((configs[0], CONFIG), (weights, WEIGHTS)):
            _copy(files[source], dest / target)
    return dest


def _copy(member: _Member, target: Path) -> None:
    """At most the member's declared size is written, whatever its stream says."""
    written = 0
    try:
        with member.open() as src, target.open("wb") as out:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > member.size:
                    raise _bad(f"The archive member {member.name!r} is longer than it declares.",
                               "invalid_adapter_archive")
                out.write(chunk)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise _bad(f"The adapter archive is damaged: {e}.", "invalid_adapter_archive") from None
