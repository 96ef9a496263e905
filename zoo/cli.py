"""What the command-line apps share: one-line errors, quiet libraries, the run-directory lock, atomic writes.

Imports nothing heavy: the apps check their flags first and import TensorFlow only after
(`quiet_import_tensorflow`), so a bad flag is reported in a fraction of a second.
"""

import contextlib
import errno
import json
import os
import socket
import sys

from absl import app, flags, logging

LOCK_FILE = "lock"


class UsageError(ValueError):
    """A bad command line or model_dir: reported as one line, exit status 2."""


class DiskFull(UsageError):
    """No room on the device for a run's file: one line naming it, exit status 2; the run resumes once there is."""

    def __init__(self, path, needed=None, free=None):
        amounts = "" if needed is None else f" (about {needed / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB free)"
        super().__init__(f"no space left on device for {path}{amounts}; free some space and run the same command "
                         "again: it resumes after the last saved epoch")


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


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or Inf: reported as one line, exit status 1."""


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
            if owner_host != host or _process_alive(pid):
                raise UsageError(
                    f"--model_dir {model_dir!r} is in use by process {pid} on {owner_host} ({path}); wait for it "
                    "to finish or pick another directory (delete the lock only if that process is gone)"
                )
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


def quiet_libraries():
    """Silences TensorFlow's and TFDS's logs unless `--verbosity` (absl's flag) is given.

    With `--verbosity=0` (INFO) or higher every library log shows; with `--verbosity=-1`
    warnings and errors. TensorFlow's C++ start-up lines (CUDA probing on a machine without a
    GPU, oneDNN notes) are written to stderr before its log level applies, so by default the
    import runs with stderr muted.
    """
    if flags.FLAGS["verbosity"].present:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if flags.FLAGS.verbosity >= logging.INFO else "1")
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    logging.set_verbosity(logging.ERROR)
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    tf.get_logger().setLevel("ERROR")


def run_app(main_fn, define_fn):
    """Runs an absl app whose flag errors, `UsageError`s and `TrainingDiverged` end in one line."""

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as error:
            fail(f"{os.path.basename(argv[0])}: {error}", 2)

    def guarded(argv):
        try:
            if len(argv) > 1:
                raise UsageError(f"unexpected arguments {argv[1:]}")
            main_fn(argv)
        except UsageError as error:
            fail(f"{os.path.basename(sys.argv[0])}: {error}", 2)
        except TrainingDiverged as error:
            fail(f"{os.path.basename(sys.argv[0])}: training diverged: {error}", 1)

    define_fn()
    app.run(guarded, flags_parser=parse)


def fail(message, status):
    print(message, file=sys.stderr, flush=True)
    sys.exit(status)
