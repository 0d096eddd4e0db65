"""pipeline.study: a run stopped by a signal of its own stops the study (no new run starts)."""
from __future__ import annotations

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
