"""The admin keys: `--admin-key`, or a file of them (`--admin-key-file`), read again when it changes.

The file holds one key a line: the key itself, or `sha256:` and the hex SHA-256 of it (`printf %s KEY |
sha256sum`), so that the file need not hold any key; blank lines and `#` comments are skipped. Keys rotate
without a restart: add the new key's line, move the clients to it, remove the old line; each server
notices the change within a second. A key is known by the start of its hash (`key_admin_` + 12 hex
digits) in the audit log, so each admin action names the key that made it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from pathlib import Path

log = logging.getLogger("ftserve.keys")
RELOAD_SECONDS = 1.0
_HEX = re.compile(r"[0-9a-f]{64}")


def _sha256(key: str | bytes) -> str:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


def read_admin_keys(path: Path) -> list[str]:
    """The hex SHA-256 digests of the file's keys (a line that is neither a key nor a digest is an error)."""
    digests = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("sha256:"):
            digest = line.removeprefix("sha256:").strip().lower()
            if not _HEX.fullmatch(digest):
                raise ValueError(f"{path}, line {number}: 'sha256:' must be followed by 64 hex digits")
            digests.append(digest)
        else:
            digests.append(_sha256(line))
    return digests


class AdminKeys:
    def __init__(self, key: str | None, path: Path | None):
        self.path, key = path, (key or "").strip()
        self._digests = [_sha256(key)] if key and path is None else []
        self._stamp: tuple | None = None
        self._checked = -RELOAD_SECONDS
        self._lock = threading.Lock()
        if path is not None:
            self._digests = read_admin_keys(path)  # a bad file stops the server at start
            self._stamp = self._stat()

    @property
    def configured(self) -> bool:
        """Whether this server has admin keys (a key file, even an empty one, counts: it may gain keys)."""
        return self.path is not None or bool(self._digests)

    def _stat(self) -> tuple | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _reload(self) -> None:
        """Read the file again if it changed. A file that disappears leaves no admin key; one that cannot be
        read as keys keeps the keys read before, and says why in the log."""
        stamp = self._stat()
        if stamp == self._stamp:
            return
        try:
            digests = [] if stamp is None else read_admin_keys(self.path)
        except (OSError, ValueError) as e:
            log.error("the admin key file was not read again, the keys read before stay: %s", e)
            return
        self._digests, self._stamp = digests, stamp
        log.warning("admin keys read again from %s: %d key(s)", self.path, len(digests))

    def match(self, presented: bytes) -> str | None:
        """The key id of the admin key presented, or None."""
        if self.path is not None and time.monotonic() - self._checked >= RELOAD_SECONDS:
            with self._lock:
                if time.monotonic() - self._checked >= RELOAD_SECONDS:
                    self._reload()
                    self._checked = time.monotonic()
        digest, found = _sha256(presented), None
        for known in self._digests:  # every one compared, with no early exit
            if hmac.compare_digest(known, digest):
                found = known
        return None if found is None else "key_admin_" + found[:12]
