"""salfmix.torchrun: torch's launcher, leaving nothing behind in the temp folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_launch_leaves_no_folder_in_the_temp_folder(tmp_path: Path) -> None:
    # Plain torchrun leaves an empty torchelastic_* folder there on every launch.
    temp = tmp_path / "temp"
    temp.mkdir()
    script = tmp_path / "worker.py"
    script.write_text("import os\nprint('rank', os.environ['RANK'])\n")
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "salfmix.torchrun", "--standalone", "--nproc_per_node", "2", str(script)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(proc.stdout.split("\n"))[-2:] == ["rank 0", "rank 1"]
    assert os.listdir(temp) == []
