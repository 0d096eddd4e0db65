"""salfmix.runs.folder.RunFolder: what a run may do to a folder, and what the manifest records."""

import json
import os

import pytest

from salfmix.errors import RunError, RunLocked, RunRefused
from salfmix.runs.folder import FINISHED, FRESH, RESUME, RunFolder, is_finished
from salfmix.runs.lock import LOCK_FILE, RunLock
from salfmix.runs.manifest import MANIFEST, config_hash, read_manifest

CONFIG = "MIX:\n  METHOD: none\n  R: 0.3\nSOLVER:\n  BASE_LR: 0.05\n  MAX_EPOCHS: 2\nTRAIN:\n  PROGRESS: true\n"


def folder(path, resume=False, config=CONFIG, **kw):
    kw.setdefault("allowed", ("SOLVER.MAX_EPOCHS", "TRAIN.*"))
    return RunFolder(
        str(path),
        stage="pretrain",
        config_text=config,
        resume=resume,
        method="none",
        command=["train"],
        resume_command="train --resume",
        artefacts=("metrics.jsonl", "model_epoch*.pth"),
        **kw,
    )


def finished_run(path):
    run = folder(path)
    assert run.open() == FRESH
    (path / "config.yaml").write_text(CONFIG)
    run.start(epoch=0)
    (path / "model_final.pth").write_bytes(b"weights")
    run.finish(epoch=2)
    run.close()


def snapshot(path):
    return {n: (os.stat(path / n).st_mtime_ns, (path / n).read_bytes()) for n in sorted(os.listdir(path))}


def test_manifest_of_a_run(tmp_path):
    finished_run(tmp_path)
    m = read_manifest(str(tmp_path))
    assert m["stage"] == "pretrain" and m["status"] == "finished" and m["method"] == "none"
    assert m["config_hash"] == config_hash(CONFIG) and m["epoch"] == 2 and len(m["attempts"]) == 1
    assert m["command"] == ["train"] and m["resume_command"] == "train --resume"
    assert set(m["versions"]) == {"python", "salfmix", "torch", "torchvision", "detectron2", "git_commit"}
    assert m["started"] <= m["ended"] and m["error"] is None
    assert sorted(os.listdir(tmp_path)) == ["config.yaml", "model_final.pth", MANIFEST, LOCK_FILE]
    # What the numbers depend on beyond code and versions is recorded per attempt.
    assert m["attempts"][0]["machine"]["cpu"] and m["attempts"][0]["machine"]["torch_threads"] >= 1


def test_a_finished_run_is_never_overwritten(tmp_path):
    finished_run(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(RunRefused, match=r"holds a finished run of none, ended .*never overwritten: choose another"):
        folder(tmp_path).open()
    assert folder(tmp_path, resume=True).open() == FINISHED  # the tool says so and exits 0
    assert snapshot(tmp_path) == before
    os.remove(tmp_path / MANIFEST)  # a run folder of an older version: model_final.pth decides
    assert is_finished(str(tmp_path))
    with pytest.raises(RunRefused, match="holds a finished run"):
        folder(tmp_path).open()


def test_a_new_run_is_refused_where_another_left_files(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunRefused, match=r"already holds a run \(metrics\.jsonl\): pass --resume to continue it"):
        folder(tmp_path).open()
    assert sorted(os.listdir(tmp_path)) == ["metrics.jsonl", "notes.txt"]  # no lock file either
    assert folder(tmp_path, resume=True).open() == RESUME


def test_a_killed_run_is_named_as_such(tmp_path):
    run = folder(tmp_path)
    run.open()
    run.start()
    run.lock.release()  # as if killed: the kernel drops the lock, the manifest still says running
    with pytest.raises(RunRefused, match=r"a run that was killed \(status still 'running'\) of none \(run\.json\)"):
        folder(tmp_path).open()


def test_resume_with_another_config_names_every_key(tmp_path):
    run = folder(tmp_path)
    run.open()
    (tmp_path / "config.yaml").write_text(CONFIG)
    run.start()
    run.interrupt(2, "at epoch 1")
    run.close()
    assert read_manifest(str(tmp_path))["interrupted"] == "SIGINT at epoch 1"
    drift = CONFIG.replace("METHOD: none", "METHOD: cutmix").replace("BASE_LR: 0.05", "BASE_LR: 0.5")
    with pytest.raises(RunRefused) as err:
        folder(tmp_path, resume=True, config=drift).open()
    assert "the config differs from the run's " in str(
        err.value
    ) and "in MIX.METHOD: 'none' -> 'cutmix'; SOLVER.BASE_LR: 0.05 -> 0.5; resume with the run's config" in str(
        err.value
    )
    allowed = CONFIG.replace("MAX_EPOCHS: 2", "MAX_EPOCHS: 5").replace("PROGRESS: true", "PROGRESS: false")
    run = folder(tmp_path, resume=True, config=allowed)
    assert run.open() == RESUME
    run.start()
    assert len(read_manifest(str(tmp_path))["attempts"]) == 2
    run.close()


def test_the_lock_is_held_between_open_and_close(tmp_path):
    run = folder(tmp_path)
    run.open()
    with pytest.raises(RunLocked, match=f"in use by pid {os.getpid()}"):
        folder(tmp_path, resume=True).open()
    run.close()
    with RunLock(str(tmp_path)):
        pass


def test_output_dir_that_is_a_file_and_other_stages(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match=r"^OUTPUT_DIR .*file: exists and is not a folder$"):
        folder(tmp_path / "file").open()
    (tmp_path / "det").mkdir()
    (tmp_path / "det" / MANIFEST).write_text(json.dumps({"stage": "detection", "status": "failed"}))
    with pytest.raises(RunRefused, match="holds a detection run, not a pretrain run"):
        folder(tmp_path / "det", resume=True).open()


def test_only_the_main_process_locks_and_writes(tmp_path):
    run = folder(tmp_path, main=False)
    assert run.open() == FRESH
    run.start()
    run.finish()
    assert not os.path.exists(tmp_path / MANIFEST) and not os.path.exists(tmp_path / LOCK_FILE)


def test_stale_temps_are_removed_when_the_run_starts(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("")
    (tmp_path / ".model_epoch0002.pth.0123456789ab.tmp").write_bytes(b"half")
    folder(tmp_path, resume=True).open()
    assert sorted(os.listdir(tmp_path)) == ["metrics.jsonl", LOCK_FILE]
