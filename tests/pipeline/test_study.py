"""pipeline.study: a run stopped by a signal of its own stops the study (no new run starts)."""
from __future__ import annotations

import os
import threading

import pytest

from pipeline import study
from pipeline.output import ChildSignals
from pretrain.study import Recipe, plan_runs, plan_tags
from runs.signals import Interrupted


def test_a_child_ended_by_sigterm_stops_the_study(tmp_path, monkeypatch) -> None:
    tags = plan_tags(["none", "cutout", "mixup", "cutmix"], [])
    runs = plan_runs(str(tmp_path), tags, [0])
    started = []
    lock = threading.Lock()

    def fake_run(self, cmd, env=None, log_path=None) -> int:
        with lock:
            started.append(log_path)
            first = len(started) == 1
        return 143 if first else 1  # the first run is killed with SIGTERM (by a scheduler, say)

    monkeypatch.setattr(ChildSignals, "run", fake_run)
    files = {m: "unused.yaml" for _, m, _ in tags}
    with pytest.raises(Interrupted):
        study.execute_study(runs, files, Recipe(epochs=1), str(tmp_path), jobs=2, say=lambda line: None)
    # the second worker may have started before the first one ended; no run starts after it
    assert 1 <= len(started) <= 2


def test_a_live_run_is_named_before_anything_runs(tmp_path):
    """A study whose earlier run still holds its folder (e.g. orphaned by a killed orchestrator):
    one line naming its process, before anything starts."""
    import pytest

    from pipeline.plan import PipelineError
    from pipeline.study import check_study
    from pretrain.study import Recipe, StudyRun
    from runs.lock import RunLock

    run = StudyRun("none", "none", 0, 0.3, str(tmp_path / "none" / "seed0"))
    os.makedirs(run.run_dir)
    cfg = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "pretrain", "cifar10_preact18_none.yaml")
    with RunLock(run.run_dir, ["python", "tools/pretrain.py"]) as lock:
        lock.record_holder()
        with pytest.raises(PipelineError, match=rf"none: OUTPUT_DIR {run.run_dir} is in use by pid {os.getpid()}"):
            check_study([run], {"none": cfg}, Recipe(), str(tmp_path))
