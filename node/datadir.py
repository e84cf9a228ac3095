"""The data directory: its layout, the single-process lock and the key files.

Layout: ``node.key`` (this node's Ed25519 key, PEM, mode 0600), ``node.lock`` (held while a daemon
runs), ``node.db`` (SQLite, WAL) and ``keys/`` (account and pool keys, each 0600).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path

from node.errors import DataDirError, DataDirLocked, IdentityError
from protocol.identity import KeyFormatError, SigningKey

NODE_KEY = "node.key"
LOCK_FILE = "node.lock"
DATABASE = "node.db"
KEYS_DIR = "keys"


class DataDir:
    """A node's data directory; creating it is idempotent."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def database(self) -> Path:
        return self.path / DATABASE

    @property
    def keys(self) -> Path:
        return self.path / KEYS_DIR

    def ensure(self) -> None:
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.keys.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise DataDirError(
                f"cannot create data directory {self.path}: {exc.strerror}"
            ) from None
        if not self.path.is_dir():
            raise DataDirError(f"data directory {self.path} is not a directory")
        for private in (self.path, self.keys):
            with contextlib.suppress(OSError):  # not ours to change: leave it
                os.chmod(private, 0o700)

    def node_key(self, *, create: bool) -> tuple[SigningKey, bool]:
        """This node's key, and whether it was created now."""
        return load_or_create_key(self.path / NODE_KEY, create=create)

    def lock(self) -> DataDirLock:
        return DataDirLock(self.path / LOCK_FILE)


class DataDirLock:
    """An exclusive flock on the data directory, held for the daemon's lifetime.

    flock is released by the kernel when the process dies, so a kill -9 never leaves a stale lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise DataDirError(f"cannot open lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = os.pread(fd, 32, 0).decode().strip()
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                who = f" (pid {holder})" if holder else ""
                raise DataDirLocked(
                    f"data directory {self.path.parent} is in use by another "
                    f"liberation-node{who}; stop it or choose another --data-dir"
                ) from None
            raise DataDirError(f"cannot lock {self.path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def load_or_create_key(path: Path, *, create: bool) -> tuple[SigningKey, bool]:
    """Load a private key file after checking its permissions, or create it with mode 0600."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if not create:
            raise IdentityError(
                f"key file {path} does not exist; run `liberation-node init`"
            ) from None
        key = SigningKey.generate()
        write_key(path, key)
        return key, True
    except OSError as exc:
        raise IdentityError(f"cannot read key file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise IdentityError(f"key file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise IdentityError(
            f"key file {path} is accessible by other users "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run `chmod 600 {path}`"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        return SigningKey.from_pem(data), False
    except KeyFormatError as exc:
        raise IdentityError(f"key file {path} is corrupt: {exc}") from None


def write_key(path: Path, key: SigningKey) -> None:
    """Write a key file atomically with mode 0600 (never readable by others, not even briefly)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, key.to_pem())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        # The rename must reach the disk too, or a power cut could lose the key of an account
        # whose enrolment the ledger already holds.
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        raise IdentityError(f"cannot write key file {path}: {exc.strerror}") from None
