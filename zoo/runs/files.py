"""A run directory on disk: its layout, the lock of the process that writes it, atomic writes, resume checks.

    config.json          the resolved configuration (see zoo.runs.config)
    checkpoints/         one per finished epoch: weights, optimizer state, RNG state, epoch counter
    best.weights.h5      the weights with the best validation bound so far
    logs/                TensorBoard: per-epoch scalars (train and validation), a grid of samples
    lock                 while a process writes: its pid and host
"""

import contextlib
import errno
import json
import os
import socket
import sys

from zoo.runs.errors import DiskFull, UsageError

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
BEST_WEIGHTS = "best.weights.h5"
LOG_DIR = "logs"
LOCK_FILE = "lock"


def ensure_space(path, needed):
    """Raises `DiskFull` naming `path` unless its file system has `needed` bytes free.

    Checked before a write, because HDF5 (Keras's weights format) can crash the process, not
    raise, when a write hits a full disk.
    """
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(directory):  # a directory the write will create
        directory = os.path.dirname(directory)
    stat = os.statvfs(directory)
    free = stat.f_bavail * stat.f_frsize
    if free < needed:
        raise DiskFull(path, needed, free)


def atomic_write(path, write):
    """Calls `write(temporary_path)`, then renames the result to `path`.

    A kill at any moment leaves either the old file or the new one under `path`, never a
    half-written one (a rename within a directory is atomic on POSIX).
    """
    directory, name = os.path.split(path)
    # Keep the extension last: Keras picks the weights format from it.
    temporary = os.path.join(directory, f".tmp-{os.getpid()}-{name}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise DiskFull(path) from None
        raise
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json(path, value, **kwargs):
    def write(temporary):
        with open(temporary, "w") as f:
            json.dump(value, f, **kwargs)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


@contextlib.contextmanager
def run_dir_lock(model_dir):
    """Holds `<model_dir>/lock` (the owner's pid and host) while a run writes into `model_dir`.

    A second process on the same directory gets a `UsageError` naming the owner. A lock left
    by a process that no longer runs on this host is stale: it is taken over, with a note.
    A lock from another host cannot be checked and is reported (delete it if that run is gone).
    """
    path = os.path.join(model_dir, LOCK_FILE)
    host = socket.gethostname()
    claim = f"{path}.{os.getpid()}"
    with open(claim, "w") as f:
        f.write(f"{os.getpid()} {host}\n")
    try:
        while True:
            try:
                os.link(claim, path)  # atomic, and fails if the lock exists: never two owners
                break
            except FileExistsError:
                pass
            owner = _read_owner(path)
            if owner is None:
                continue  # released meanwhile: try again
            pid, owner_host = owner
            if _in_use(owner):
                raise _in_use_error(model_dir, owner)
            # Stale: rename it away first, so that of two processes taking it over only one removes it.
            stale = claim + ".stale"
            try:
                os.rename(path, stale)
            except FileNotFoundError:
                continue
            if _read_owner(stale) != owner:  # another process took it over meanwhile: give it back
                with contextlib.suppress(FileExistsError):
                    os.link(stale, path)
                os.remove(stale)
                continue
            os.remove(stale)
            print(f"Took over the stale lock of process {pid} (no longer running) in {model_dir}", file=sys.stderr)
    finally:
        os.remove(claim)
    try:
        yield
    finally:
        if _read_owner(path) == (os.getpid(), host):
            os.remove(path)


def check_not_in_use(model_dir):
    """Raises the `UsageError` `run_dir_lock` would raise if a live process holds `<model_dir>/lock`: an app checks
    this before its slow start (TensorFlow, data), though only the lock itself keeps a second writer out."""
    owner = _read_owner(os.path.join(model_dir, LOCK_FILE))
    if owner is not None and _in_use(owner):
        raise _in_use_error(model_dir, owner)


def _in_use(owner):
    """Whether the lock's owner `(pid, host)` may still run: alive on this host, or on another host."""
    pid, owner_host = owner
    return owner_host != socket.gethostname() or _process_alive(pid)


def _in_use_error(model_dir, owner):
    pid, owner_host = owner
    return UsageError(
        f"--model_dir {model_dir!r} is in use by process {pid} on {owner_host} ({os.path.join(model_dir, LOCK_FILE)}); "
        "wait for it to finish or pick another directory (delete the lock only if that process is gone)"
    )


def _read_owner(path):
    """`(pid, host)` from a lock file, None if there is none."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        pid, host = text.split()
        return int(pid), host
    except ValueError:
        raise UsageError(f"{path} is not a zoo lock file (expected 'pid host', got {text[:40]!r}); delete it") from None


def read_json(path):
    """The JSON value in `path`; `UsageError` naming the file when it is not JSON."""
    with open(path) as f:
        try:
            return json.load(f)
        except ValueError as error:
            raise UsageError(f"{path} is not valid JSON ({error}); restore it or pick another directory") from None


def read_config(model_dir):
    """The configuration a run wrote into `model_dir`; `UsageError` if there is none."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise UsageError(f"--model_dir {model_dir!r} is a file, not a run directory")
    if not os.path.isdir(model_dir):
        raise UsageError(f"--model_dir {model_dir!r} does not exist; train into it with python -m zoo.train first")
    if not os.path.isfile(path):
        raise UsageError(
            f"--model_dir {model_dir!r} holds no {CONFIG_FILE}: it is empty or not a zoo.train run directory"
        )
    return read_json(path)


def check_directory_path(directory, flag):
    """`UsageError` if `directory` is a file or lies under one: no run could ever write there."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UsageError(f"{flag} {directory!r} is a file, not a directory; pick a directory")
    parent = os.path.dirname(os.path.abspath(directory))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"{flag} {directory!r} cannot be made: {parent} is a file")


def check_resumable(directory, flag, definition_file, definition, changed, kind):
    """`directory` is new (absent or empty), or holds the same `kind` (e.g. "zoo.train run") to resume.

    The same: `changed(previous, definition)`, given the content of `definition_file` there,
    lists nothing (it returns the names of what differs). `flag` names the directory's option
    in messages. Raises `UsageError` otherwise.
    """
    check_directory_path(directory, flag)
    if not os.path.isdir(directory) or not set(os.listdir(directory)) - {LOCK_FILE}:
        return
    path = os.path.join(directory, definition_file)
    if not os.path.isfile(path):
        raise UsageError(f"{flag} {directory!r} is not empty and holds no {definition_file}: not a {kind}; "
                         "pick a new or empty directory")
    differences = changed(read_json(path), definition)
    if differences:
        raise UsageError(f"{flag} {directory!r} holds a {kind.split()[-1]} with different {', '.join(differences)}; "
                         "resume it with the same flags or pick a new directory")
