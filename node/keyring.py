"""Keys of the accounts (and the pool) this node holds: one 0600 PEM file each in ``keys/``."""

from __future__ import annotations

from pathlib import Path

from node.datadir import load_or_create_key, write_key
from node.errors import IdentityError
from protocol.identity import KeyFormatError, SigningKey, parse_key_id


class Keyring:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._keys: dict[bytes, SigningKey] = {}

    def load(self) -> None:
        """Read every key file; a bad one stops start-up with a message naming it."""
        self._keys.clear()
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("*.key")):
            try:
                expected = parse_key_id(path.stem)
            except KeyFormatError:
                raise IdentityError(f"unexpected file in the keyring: {path}") from None
            key, _ = load_or_create_key(path, create=False)
            if key.public != expected:
                raise IdentityError(f"key file {path} holds another key than its name says")
            self._keys[key.public] = key

    def create(self) -> SigningKey:
        key = SigningKey.generate()
        self.add(key)
        return key

    def add(self, key: SigningKey) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_key(self.directory / f"{key.id}.key", key)
        self._keys[key.public] = key

    def remove(self, account: bytes) -> None:
        """Forget a key that never got into the ledger (its enrolment failed)."""
        self._keys.pop(account, None)
        (self.directory / f"{account.hex()}.key").unlink(missing_ok=True)

    def get(self, account: bytes) -> SigningKey | None:
        return self._keys.get(account)

    def __contains__(self, account: object) -> bool:
        return account in self._keys

    def accounts(self) -> list[bytes]:
        return sorted(self._keys)
