"""salfmix.runs.lock: one live holder per run folder; a dead holder's lock does not block."""

import json
import os
import signal
import subprocess
import sys

import pytest

from salfmix.errors import RunLocked
from salfmix.runs.lock import LOCK_FILE, RunLock

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
HOLD = (
    "import sys, time; from salfmix.runs.lock import RunLock; "
    "lock = RunLock(sys.argv[1], ['train', 'it']).acquire(); lock.record_holder(); "
    "print('held', flush=True); time.sleep(600)"
)


def hold_in_subprocess(folder):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, folder],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=REPO),
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    proc = hold_in_subprocess(str(tmp_path))
    try:
        with pytest.raises(RunLocked) as err:
            RunLock(str(tmp_path)).acquire()
        message = str(err.value)
        assert f"OUTPUT_DIR {tmp_path} is in use by pid {proc.pid} on " in message
        assert "(train it): wait for it to end, or choose another OUTPUT_DIR" in message and "\n" not in message
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_the_lock_of_a_killed_process_does_not_block(tmp_path):
    proc = hold_in_subprocess(str(tmp_path))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == proc.pid  # the file stays behind
    with RunLock(str(tmp_path), ["again"]) as lock:
        lock.record_holder()
        assert json.loads((tmp_path / LOCK_FILE).read_text())["command"] == ["again"]
    with RunLock(str(tmp_path)):  # released on exit
        pass


def test_the_same_process_cannot_hold_it_twice(tmp_path):
    # flock locks belong to the open file: a second open in one process is a second holder
    with RunLock(str(tmp_path)):
        with pytest.raises(RunLocked):
            RunLock(str(tmp_path)).acquire()
    RunLock(str(tmp_path)).acquire().release()  # free again
