"""Atomic writes, readable results and one writer per run folder.

A stopped run never leaves a half-written file or folder behind (write to a temp name, then
rename); what is written is readable by others as a normal file would be (the umask decides,
not mkstemp's private 0600); and a run folder has at most one edgetune run writing to it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgetune.errors import InputError

LOG = logging.getLogger(__name__)


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
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
        raise InputError(f"output '{path}' already exists; choose another --out or pass --overwrite")


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
            os.replace(target, old / "previous") if target.is_dir() else os.replace(target, old / "f")
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _readable(folder: Path) -> None:
    """Folders 0755 and files 0644, less the umask: temp dirs are born 0700."""
    mask = _umask()
    os.chmod(folder, 0o777 & ~mask)
    for item in folder.rglob("*"):
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~mask)


LOCK_NAME = ".edgetune.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def run_lock(folder: str | Path, force: bool = False, take_stale: bool = False) -> Iterator[Path]:
    """Hold `folder/.edgetune.lock` (pid, host, start time) while a run writes to the folder.

    Another live run's lock is refused; a lock whose process is gone (same host) is stale:
    refused with that said, or taken over (and said) when `take_stale` (a `--resume`);
    `force` takes either over. The lock goes when the block ends, however it ends, and
    staging folders a killed run left behind are removed once the lock is held.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                owner = json.loads(lock.read_text())
            except (OSError, ValueError):
                owner = {"pid": -1, "host": "?", "since": "?"}
            same_host = owner.get("host") == me["host"]
            stale = same_host and not _alive(int(owner.get("pid", -1)))
            if stale and take_stale:
                LOG.warning("run folder %s: taking over the stale lock of pid %s (no longer running)",
                            folder, owner.get("pid"))
                force = True
            if not force:
                who = f"pid {owner.get('pid')} on {owner.get('host')} since {owner.get('since')}"
                if stale:
                    raise InputError(f"run folder '{folder}' has a stale lock ({who}, no longer "
                                     "running); if no run uses the folder, pass --force-unlock") from None
                raise InputError(f"run folder '{folder}' is in use by another edgetune run ({who}); "
                                 "wait for it, choose another --out, or --force-unlock if it is gone") from None
            lock.unlink(missing_ok=True)
            force = False  # take it over once
    with os.fdopen(fd, "w") as handle:
        json.dump(me, handle)
    for leftover in [*folder.glob(".*.tmp-*"), *folder.glob("*/.*.tmp-*"), *folder.glob(".*.old-*"),
                     *folder.glob("*/.*.old-*")]:
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
