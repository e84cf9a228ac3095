from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from node.datadir import DataDir, load_or_create_key
from node.errors import DataDirLocked, IdentityError


def test_first_start_creates_a_private_key(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "d")
    data.ensure()
    key, created = data.node_key(create=True)
    assert created
    path = tmp_path / "d" / "node.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700
    again, created_again = data.node_key(create=True)
    assert not created_again
    assert again.public == key.public


def test_missing_key_without_create(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="does not exist"):
        load_or_create_key(tmp_path / "node.key", create=False)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    load_or_create_key(path, create=True)
    os.chmod(path, mode)
    with pytest.raises(IdentityError, match=r"accessible by other users .*chmod 600"):
        load_or_create_key(path, create=True)


def test_corrupt_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError, match="is corrupt"):
        load_or_create_key(path, create=True)


def test_key_of_another_type_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    path = tmp_path / "node.key"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    path.write_bytes(pem)
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError, match="not an Ed25519 key"):
        load_or_create_key(path, create=True)


def test_unreadable_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.mkdir(mode=0o700)
    with pytest.raises(IdentityError, match="not a regular file"):
        load_or_create_key(path, create=True)


def test_second_lock_on_the_same_dir_is_refused(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "d")
    data.ensure()
    with (
        data.lock(),
        pytest.raises(
            DataDirLocked, match=rf"in use by another liberation-node \(pid {os.getpid()}\)"
        ),
    ):
        data.lock().acquire()
    # Released: a new holder gets it.
    with data.lock():
        pass


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    from node.errors import DataDirError

    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(DataDirError, match="cannot create data directory"):
        DataDir(target).ensure()
