"""Encryption of secrets at rest (destination tokens).

`RELAY_SECRET_KEY` is a comma-separated list of Fernet keys. The first one
encrypts; all of them decrypt. To rotate without downtime: put a new key in
front, deploy, run `relay secrets rotate` (re-encrypts every stored secret
with the new key), then drop the old key.

With no `RELAY_SECRET_KEY` and no `DATABASE_URL` (a development machine),
a key is generated once into the instance folder. A deployment with a real
database must set the variable: a key on an ephemeral disk would be lost.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from relay.config import Config
from relay.errors import ConfigError

log = logging.getLogger(__name__)

DEV_KEY_FILE = "secret.key"


class KeyRing:
    """Encrypts and decrypts small JSON documents with a list of keys."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        if not keys:
            raise ConfigError("no secret key configured (RELAY_SECRET_KEY)")
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except ValueError:
            raise ConfigError(
                "RELAY_SECRET_KEY must hold Fernet keys (32 url-safe base64 bytes); "
                "make one with `relay secrets new-key`"
            ) from None

    @classmethod
    def from_config(cls, config: Config) -> KeyRing:
        if config.secret_keys:
            return cls(config.secret_keys)
        if config.database_url is not None:
            raise ConfigError(
                "RELAY_SECRET_KEY must be set when DATABASE_URL is: secrets "
                "encrypted with a key on an ephemeral disk could never be read again"
            )
        return cls((_development_key(config.instance_path),))

    def encrypt(self, document: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(document).encode()).decode()

    def decrypt(self, token: str) -> dict[str, Any]:
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise ConfigError(
                "a stored secret cannot be decrypted with any key in RELAY_SECRET_KEY"
            ) from None

    def rotate(self, token: str) -> str:
        """The same document, encrypted with the first key."""
        return self._fernet.rotate(token.encode()).decode()


def new_key() -> str:
    return Fernet.generate_key().decode()


def _development_key(instance_path: Path) -> str:
    path = instance_path / DEV_KEY_FILE
    if path.exists():
        return path.read_text().strip()

    instance_path.mkdir(parents=True, exist_ok=True)
    key = new_key()
    # Created with owner-only permissions from the start, never world-readable.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
    log.warning("secrets: generated a development key in %s", path)
    return key
