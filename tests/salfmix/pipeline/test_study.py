"""salfmix.pipeline.study: a run stopped by a signal of its own stops the study (no new run starts)."""

from __future__ import annotations

import os
import threading

import pytest

from salfmix.pipeline import study
from salfmix.pipeline.output import ChildSignals
from salfmix.pipeline.study import Recipe, plan_runs, plan_tags
from salfmix.runs.signals import Interrupted


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
    with pytest.raises(Interrupted):
        study.execute_study(runs, Recipe(epochs=1, config="unused.yaml"), str(tmp_path), jobs=2, say=lambda line: None)
    # the second worker may have started before the first one ended; no run starts after it
    assert 1 <= len(started) <= 2


def test_a_live_run_is_named_before_anything_runs(tmp_path):
    """A study whose earlier run still holds its folder (e.g. orphaned by a killed orchestrator):
    one line naming its process, before anything starts."""
    import pytest

    from salfmix.pipeline.plan import PipelineError
    from salfmix.pipeline.study import Recipe, StudyRun, check_study
    from salfmix.runs.lock import RunLock

    run = StudyRun("none", "none", 0, 0.3, str(tmp_path / "none" / "seed0"))
    os.makedirs(run.run_dir)
    from leaves import leaf_config

    cfg = leaf_config("cifar10_preact18_none")
    with RunLock(run.run_dir, ["python", "tools/pretrain_net.py"]) as lock:
        lock.record_holder()
        with pytest.raises(PipelineError, match=rf"none: OUTPUT_DIR {run.run_dir} is in use by pid {os.getpid()}"):
            check_study([run], Recipe(config=cfg), str(tmp_path))
