"""salfmix.pipeline.output: a stage's output in its log (and the terminal), signals forwarded to
child processes once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from salfmix.pipeline.output import ChildSignals, stage_output, tail


def test_stage_output_reaches_the_log_from_python_and_from_children(tmp_path, capfd) -> None:
    log = str(tmp_path / "logs" / "x.log")
    with stage_output(log, quiet=True):
        print("from python", file=sys.__stdout__, flush=True)  # pytest replaced sys.stdout
        os.write(2, b"from fd 2\n")
        subprocess.run([sys.executable, "-c", "print('from a child')"], check=True)
    text = open(log).read()
    assert "from python" in text and "from fd 2" in text and "from a child" in text
    assert "from" not in capfd.readouterr().out  # quiet: nothing on the terminal
    with stage_output(log, quiet=False):
        print("echoed", file=sys.__stdout__, flush=True)
    assert "echoed" in capfd.readouterr().out and open(log).read().endswith("echoed\n")
    assert tail(log, 2) == "from a child\nechoed"


def test_a_signal_reaches_the_child_once_and_its_status_comes_back(tmp_path) -> None:
    script = tmp_path / "child.py"
    count = tmp_path / "count"
    script.write_text(
        "import signal, sys, time\n"
        "seen = []\n"
        "signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))\n"
        "print('ready', flush=True)\n"
        "deadline = time.time() + 30\n"
        "while not seen and time.time() < deadline:\n"
        "    time.sleep(0.05)\n"
        "time.sleep(0.5)\n"
        f"open({str(count)!r}, 'w').write(str(len(seen)))\n"
        "sys.exit(143)\n"
    )
    log = str(tmp_path / "child.log")
    result = {}

    def send_when_ready() -> None:
        deadline = time.time() + 30
        while time.time() < deadline and "ready" not in (open(log).read() if os.path.exists(log) else ""):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=send_when_ready)
    before = signal.getsignal(signal.SIGTERM)
    with ChildSignals() as signals:
        sender.start()
        result["rc"] = signals.run([sys.executable, str(script)], log_path=log)
    sender.join()
    assert result["rc"] == 143 and signals.signum == signal.SIGTERM
    assert count.read_text() == "1"
    assert signal.getsignal(signal.SIGTERM) is before  # the handler was put back


# The child writes its markers whole (temp file, then rename): the test polls for them, and a
# marker seen between its creation and its write would read empty.
CHILD = """
import os, signal, sys, time
marker = sys.argv[1]
def put(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
def handle(signum, frame):
    put(marker, str(signum))
    sys.exit(143)
signal.signal(signal.SIGTERM, handle)
put(marker + ".started", str(os.getpid()))
time.sleep(120)
"""

PARENT = """
import sys
from salfmix.pipeline.output import ChildSignals
with ChildSignals() as signals:
    signals.run([sys.executable, sys.argv[1], sys.argv[2]])
"""


def test_a_killed_orchestrator_takes_its_children_with_it(tmp_path):
    """SIGKILL (the out-of-memory killer) of the process that started a run: the run gets a
    SIGTERM and stops at its own safe point, instead of training on, orphaned."""
    import signal
    import subprocess
    import sys
    import time

    child, parent = tmp_path / "child.py", tmp_path / "parent.py"
    child.write_text(CHILD)
    parent.write_text(PARENT)
    marker = tmp_path / "marker"
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    env = dict(os.environ, PYTHONPATH=repo)
    proc = subprocess.Popen([sys.executable, str(parent), str(child), str(marker)], env=env)
    deadline = time.monotonic() + 60
    while not os.path.exists(str(marker) + ".started"):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    child_pid = int(open(str(marker) + ".started").read())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    while not marker.exists():
        assert time.monotonic() < deadline, "the child was not told that its parent died"
        time.sleep(0.05)
    assert marker.read_text() == str(int(signal.SIGTERM))
    while time.monotonic() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the child is still alive")
