"""zoo.runs.files: the run directory's lock (one owner, stale locks taken over) and atomic writes."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.testing import ROOT
from zoo.runs import errors as run_errors, files as run_files


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_lock_refuses_a_second_owner_and_takes_over_a_stale_lock(tmp_path, capsys):
    lock = tmp_path / run_files.LOCK_FILE
    host = socket.gethostname()
    with run_files.run_dir_lock(str(tmp_path)):
        assert lock.read_text() == f"{os.getpid()} {host}\n"
        # A second owner, even this same process, is refused with the owner's pid and host.
        with pytest.raises(run_errors.UsageError, match=rf"in use by process {os.getpid()} on {host} \({lock}\)"):
            with run_files.run_dir_lock(str(tmp_path)):
                pass
        assert lock.exists()
    assert not lock.exists()  # released
    dead = _dead_pid()
    lock.write_text(f"{dead} {host}\n")
    with run_files.run_dir_lock(str(tmp_path)):
        assert lock.read_text() == f"{os.getpid()} {host}\n"
    assert f"Took over the stale lock of process {dead}" in capsys.readouterr().err
    lock.write_text("1 some-other-host\n")  # cannot be checked from here: refused, not taken
    with pytest.raises(run_errors.UsageError, match="in use by process 1 on some-other-host"):
        with run_files.run_dir_lock(str(tmp_path)):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [run_files.LOCK_FILE]  # no claim files left behind


def test_the_early_check_refuses_what_the_lock_refuses_and_changes_nothing(tmp_path):
    lock = tmp_path / run_files.LOCK_FILE
    host = socket.gethostname()
    run_files.check_not_in_use(str(tmp_path))  # no lock
    for owner, refused in ((f"{os.getpid()} {host}", True), (f"{_dead_pid()} {host}", False), ("1 other-host", True)):
        lock.write_text(owner + "\n")
        if refused:
            with pytest.raises(run_errors.UsageError, match=f"in use by process {owner.split()[0]} on "):
                run_files.check_not_in_use(str(tmp_path))
        else:  # stale: the lock will take it over
            run_files.check_not_in_use(str(tmp_path))
        assert lock.read_text() == owner + "\n"


def test_two_processes_never_both_hold_the_lock(tmp_path):
    # The holder keeps the lock until the test releases it, after the three others have given up: start-up
    # times (TensorFlow imports) vary by seconds on a loaded machine, so no fixed hold time would do.
    release = tmp_path / "release"
    script = (
        "import os, sys, time\nfrom zoo.runs import errors as run_errors, files as run_files\n"
        "try:\n    with run_files.run_dir_lock(sys.argv[1]):\n        print('held', flush=True)\n"
        "        while not os.path.exists(sys.argv[2]):\n            time.sleep(0.05)\n"
        "except run_errors.UsageError as e:\n    print('refused', flush=True)\n"
    )
    lock_dir = tmp_path / "run"
    lock_dir.mkdir()
    processes = [subprocess.Popen([sys.executable, "-c", script, str(lock_dir), str(release)], stdout=subprocess.PIPE,
                                  text=True, cwd=ROOT)
                 for _ in range(4)]
    deadline = time.monotonic() + 120
    while sum(p.poll() is not None for p in processes) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    release.touch()
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in processes)
    assert outcomes == ["held", "refused", "refused", "refused"]


def test_a_kill_during_a_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "best.weights.h5"
    path.write_bytes(b"old complete file")
    script = (
        "import sys, time\nfrom zoo.runs import files as run_files\n"
        "def write(tmp):\n    f = open(tmp, 'wb'); f.write(b'half'); f.flush(); print('writing', flush=True); time.sleep(60)\n"
        "run_files.atomic_write(sys.argv[1], write)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert path.read_bytes() == b"old complete file"
    run_files.atomic_write(str(path), lambda tmp: open(tmp, "wb").write(b"new"))
    assert path.read_bytes() == b"new"
    with pytest.raises(RuntimeError):  # a failing writer leaves the old file and no temporary one
        run_files.atomic_write(str(path), lambda tmp: (open(tmp, "wb").write(b"torn"), (_ for _ in ()).throw(RuntimeError())))
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".tmp-")) == ["best.weights.h5"]
