"""API keys: which project a request's key belongs to.

Three kinds of key:
- the admin key (`FTSERVE_ADMIN_KEY` or `--admin-key-file`): manages projects, service accounts and
  checkpoint permissions, and nothing else;
- the keys of `FTSERVE_API_KEYS` / `--api-key-file`: the default project's (so a one-machine setup needs
  no admin key and no database rows);
- service account keys, made by the admin API: the database keeps only their HMAC-SHA256 under the
  server's secret, and every request looks its key's digest up, so a deleted account's key is refused by
  every replica from the next request on.

The presented key is hashed (time independent of which key it is) and compared with the configured
digests in constant time; the database lookup is by digest, which tells a timing observer nothing
about any key (they cannot choose what a key's digest begins with).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from service.projects.admin_keys import AdminKeys
from service.projects.store import ProjectStore

DEFAULT_PROJECT = "proj_default"
KEY_CHECK = "key_check"  # the HMAC of a fixed text, stored: replicas with different secrets are caught at start


@dataclass(frozen=True)
class Caller:
    """Who is calling: a project's key (with its id, never the key) or the admin key (no project)."""

    project_id: str | None
    key_id: str | None

    @property
    def admin(self) -> bool:
        return self.project_id is None


OPEN = Caller(DEFAULT_PROJECT, None)  # no keys configured: every request is the default project's


def load_secret(value: str | None, path: Path) -> bytes:
    """The server's key secret: given, or generated once into `path` (readable by its owner only)."""
    if value:
        return value.encode()
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_hex(32).encode())
        return path.read_bytes().strip()


class Keyring:
    def __init__(self, store: ProjectStore, secret: bytes, api_keys: list[str], admin: AdminKeys):
        self.store, self.secret, self.admin = store, secret, admin
        self.static = [(self.digest(k), self.key_id(k)) for k in api_keys]
        self.check_secret()

    @property
    def open(self) -> bool:
        """No key configured: the API is open, as the default project."""
        return not self.static and not self.admin.configured

    def digest(self, key: str | bytes) -> str:
        return hmac.new(self.secret, key.encode() if isinstance(key, str) else key, hashlib.sha256).hexdigest()

    def key_id(self, key: str) -> str:
        return "key_" + self.digest("id:" + key)[:16]

    def check_secret(self) -> None:
        stored = self.store.stored_secret(KEY_CHECK)
        if stored is not None and not hmac.compare_digest(stored, self.digest(KEY_CHECK)):
            raise RuntimeError("This server's key secret is not the one the database's service account keys were "
                               "made with: give every server sharing the database the same FTSERVE_KEY_SECRET.")

    def new_key(self) -> tuple[str, str, str]:
        """A new service account key: (value, id, digest). The value is shown once and not stored."""
        if not hmac.compare_digest(self.store.server_secret(KEY_CHECK, self.digest(KEY_CHECK)), self.digest(KEY_CHECK)):
            self.check_secret()  # raises: another server made keys under another secret
        value = "sk-svcacct-" + secrets.token_urlsafe(32)
        return value, "key_" + secrets.token_hex(8), self.digest(value)

    def identify(self, presented: bytes) -> Caller | None:
        """The caller a key belongs to; None for no key of ours (a database lookup: run it off the event loop)."""
        if (admin_id := self.admin.match(presented)) is not None:
            return Caller(None, admin_id)
        digest = self.digest(presented)
        found = None
        for known, key_id in self.static:  # every one compared, with no early exit
            if hmac.compare_digest(digest, known):
                found = Caller(DEFAULT_PROJECT, key_id)
        if found is not None:
            return found
        owner = self.store.key_owner(digest)
        return None if owner is None else Caller(*owner)
