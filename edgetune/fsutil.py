"""Atomic writes, readable results and one writer per run folder.

A stopped run never leaves a half-written file or folder behind (write to a temp name, then
rename); what is written is readable by others as a normal file would be (the umask decides,
not mkstemp's private 0600), permissions set on open descriptors so that a symlink planted in
a folder is never followed; and a run folder has at most one edgetune run writing to it (a
kernel lock: it goes when its process does, so there is no stale-lock takeover to race).
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgetune.errors import InputError

LOG = logging.getLogger(__name__)
# A name that may become a file or folder name: no separators, no leading dot (`..`, hidden).
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"


def is_safe_name(name: str) -> bool:
    return re.fullmatch(SAFE_NAME, name) is not None


def inside(root: str | Path, path: str | Path) -> bool:
    """`path`, symlinks resolved, lies in `root`: a path read from a file may be trusted to
    stay in the run folder only so."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            make_readable(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: object) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def check_output_dir(path: str | Path, overwrite: bool) -> None:
    """Refuse to write over an existing, non-empty folder unless asked to."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"output '{path}' is a file; --out must be a folder (new or empty)")
    if path.exists() and any(p.name != LOCK_NAME for p in path.iterdir()) and not overwrite:
        raise InputError(
            f"output '{path}' already exists; choose another --out or pass --overwrite"
        )


def build_dir_atomic(target: str | Path, build: Callable[[Path], None], overwrite: bool) -> Path:
    """Build a folder in a sibling temp dir with `build(tmp)`, then swap it into place."""
    target = Path(target)
    check_output_dir(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        build(staging)
        _readable(staging)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "previous") if target.is_dir() else os.replace(
                target, old / "f"
            )
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def make_readable(fd: int) -> None:
    """A temp file's mode as a normal file's would be (0666 less the umask, not mkstemp's
    0600), set on its descriptor: its name could be swapped for a link before a chmod."""
    os.fchmod(fd, 0o666 & ~_umask())


@functools.cache
def _umask() -> int:
    """The process umask, read without setting it (`os.umask` can only be read by changing it,
    process-wide, under every other thread): from /proc, else from a probe file's mode."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"^Umask:\s*([0-7]+)$", status, re.MULTILINE).group(1), 8)
    except (OSError, AttributeError):
        with tempfile.TemporaryDirectory() as tmp:
            fd = os.open(Path(tmp) / "probe", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o777)
            mode = os.fstat(fd).st_mode
            os.close(fd)
            return ~mode & 0o777


def _readable(folder: Path) -> None:
    """Folders 0755 and files 0644, less the umask: temp dirs are born 0700. Set through
    descriptors opened without following links: a symlink in the folder is left alone."""
    mask = _umask()
    for item in [folder, *folder.rglob("*")]:
        if item.is_symlink():
            continue
        is_dir = item.is_dir()
        fd = os.open(item, os.O_RDONLY | os.O_NOFOLLOW | (os.O_DIRECTORY if is_dir else 0))
        try:
            os.fchmod(fd, (0o777 if is_dir else 0o666) & ~mask)
        finally:
            os.close(fd)


LOCK_NAME = ".edgetune.lock"


def _owner(fd: int) -> str:
    """Who the lock file says holds it, for the message (a corrupt file says so)."""
    text = os.pread(fd, 4096, 0)
    if not text:
        return "a run that has only just started"
    try:
        owner = json.loads(text)
        return f"pid {owner['pid']} on {owner['host']} since {owner['since']}"
    except (ValueError, TypeError, KeyError):
        return "an unreadable owner record"


def _open_locked(lock: Path, force: bool) -> int:
    """A descriptor of `lock` holding its exclusive kernel lock, or InputError if a live run
    holds it (`force`: the file is replaced, leaving that run a lock on a file now gone)."""
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise InputError(
                f"run folder lock '{lock}' cannot be opened ({exc.strerror}); "
                "remove it if it is not a plain file"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _owner(fd)
            os.close(fd)
            if not force:
                raise InputError(
                    f"run folder '{lock.parent}' is in use by another edgetune run "
                    f"({who}); wait for it, choose another --out, or --force-unlock "
                    "if it is gone"
                ) from None
            LOG.warning(
                "run folder %s: --force-unlock: replacing the lock of a running process (%s)",
                lock.parent,
                who,
            )
            lock.unlink(missing_ok=True)
            force = False
            continue
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock, follow_symlinks=False))
        except FileNotFoundError:
            same = False
        if same:  # not a file its last holder removed between our open and our lock
            return fd
        os.close(fd)


@contextmanager
def run_lock(folder: str | Path, force: bool = False, take_stale: bool = False) -> Iterator[Path]:
    """Hold `folder/.edgetune.lock` (an exclusive `flock`, with pid, host and start time in
    it for the messages) while a run writes to the folder.

    A lock a live run holds is refused (`force` replaces it). The kernel drops a lock when its
    process dies, so a lock file found unlocked but not empty was left by a run that died:
    stale; refused with that said, or taken over (and said) when `take_stale` (a `--resume`)
    or `force`. The lock goes when the block ends, however it ends, and staging folders a
    killed run left behind are removed once the lock is held.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    fd = _open_locked(lock, force)
    try:
        if os.fstat(fd).st_size:
            who = _owner(fd)
            if not (take_stale or force):
                raise InputError(
                    f"run folder '{folder}' has a stale lock ({who}, no longer "
                    "running); if no run uses the folder, pass --force-unlock"
                )
            LOG.warning(
                "run folder %s: taking over the stale lock of %s (no longer running)", folder, who
            )
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
    except BaseException:
        os.close(fd)  # the stale file stays, as found
        raise
    for leftover in [
        *folder.glob(".*.tmp-*"),
        *folder.glob("*/.*.tmp-*"),
        *folder.glob(".*.old-*"),
        *folder.glob("*/.*.old-*"),
    ]:
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)  # before the lock goes: a waiting opener sees it gone
        os.close(fd)
