"""A run folder (``OUTPUT_DIR``) that cannot be overwritten, mixed or mislabelled.

:class:`RunFolder` is what both stages do around their training loop:

1. :meth:`RunFolder.open` checks the folder, takes its lock (:mod:`salfmix.runs.lock`), checks again
   under the lock, and removes temp files a killed process left. The rules:

   - a finished run (``run.json`` says ``finished``; without a manifest: the stage's final file,
     e.g. ``model_final.pth``, exists) is never overwritten: a new run is refused, and
     ``--resume`` returns ``"finished"`` (the tool says so and exits 0, touching nothing);
   - a new run (no ``--resume``) into a folder holding any file of a run (``run.json``,
     ``config.yaml``, metrics, checkpoints...) is refused;
   - ``--resume`` with a resolved config that differs from the run's ``config.yaml`` in a key
     outside the stage's allowlist is refused, naming every differing key with both values.

2. :meth:`RunFolder.start` writes ``run.json`` with status ``running``; :meth:`finish`,
   :meth:`fail` and :meth:`interrupt` record how it ended; :meth:`close` releases the lock.

Only the main process of a distributed job passes ``main=True``; the others only learn whether
the run is finished (read-only), so that every process of a ``--resume`` of a finished run exits.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from salfmix.errors import RunError, RunRefused
from salfmix.runs.files import describe_os_error, remove_stale_temps
from salfmix.runs.lock import LOCK_FILE, RunLock
from salfmix.runs.manifest import (
    MANIFEST,
    config_drift,
    config_hash,
    describe_drift,
    machine,
    now,
    read_manifest,
    versions,
    write_manifest,
)
from salfmix.runs.signals import Interrupted, signal_name

FRESH, RESUME, FINISHED = "fresh", "resume", "finished"


def is_finished(folder: str, final_file: str = "model_final.pth") -> bool:
    """Whether ``folder`` holds a finished run: its manifest says so, or it has none and ``final_file`` exists."""
    manifest = read_manifest(folder)
    if manifest:
        return manifest.get("status") == "finished"
    return os.path.isfile(os.path.join(folder, final_file))


def finished_run_drift(
    folder: str, config_text: str, same_run: Sequence[str] = (), defaults_text: str | None = None
) -> list[tuple[str, Any, Any]]:
    """How the resolved config ``config_text`` differs from the run in ``folder`` (its
    ``config.yaml``), outside the keys of ``same_run``: empty when the request asks for exactly
    that run (or the folder has no config.yaml to compare with)."""
    path = os.path.join(folder, "config.yaml")
    try:
        with open(path, encoding="utf-8") as f:
            old = f.read()
    except FileNotFoundError:
        return []
    except OSError as err:
        raise RunError(f"{path}: cannot read ({describe_os_error(err)})") from None
    return config_drift(old, config_text, same_run, defaults_text)


def _attempts(previous: dict[str, Any]) -> list[dict[str, Any]]:
    """The attempts an earlier manifest recorded (a count, in manifests of older versions)."""
    attempts = previous.get("attempts")
    if isinstance(attempts, list):
        return [dict(a) for a in attempts if isinstance(a, dict)]
    return [{"started": None} for _ in range(int(attempts or 0))]


def _attempt() -> dict[str, Any]:
    """This attempt: where, on what hardware and when it started, and under SLURM its job id and
    restart count (a resumed run may go on on another machine: recorded per attempt)."""
    attempt: dict[str, Any] = {"started": now(), "host": socket.gethostname(), "pid": os.getpid(), "machine": machine()}
    if os.environ.get("SLURM_JOB_ID"):
        attempt.update(
            slurm_job_id=os.environ["SLURM_JOB_ID"],
            slurm_restart_count=int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0),
        )
    attempt.update(ended=None, end=None)
    return attempt


class RunFolder:
    """One stage's run in ``folder``; see the module docstring for the rules."""

    def __init__(
        self,
        folder: str,
        *,
        stage: str,
        config_text: str,
        resume: bool,
        method: str = "",
        command: Sequence[str] | None = None,
        resume_command: str = "",
        allowed: Sequence[str] = (),
        artefacts: Sequence[str] = (),
        final_file: str = "model_final.pth",
        main: bool = True,
        same_run: Sequence[str] = (),
        defaults_text: str | None = None,
    ) -> None:
        self.folder, self.stage, self.config_text, self.resume = folder, stage, config_text, resume
        self.method, self.resume_command = method, resume_command
        self.command = list(command) if command is not None else []
        self.allowed, self.final_file, self.main = tuple(allowed), final_file, main
        # Keys in which a request may differ from a finished run and still ask for that run
        # (where things are, how it reports); everything else asks for another run.
        self.same_run, self.defaults_text = tuple(same_run), defaults_text
        self.artefacts = tuple(artefacts) + (MANIFEST, "config.yaml", final_file)
        self.lock: RunLock | None = None
        self.manifest: dict[str, Any] = {}
        self.mode: str | None = None

    # ------------------------------------------------------------------------------------------
    def _path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def found_artefacts(self) -> list[str]:
        """The names in the folder that belong to a run (the lock file does not)."""
        try:
            names = sorted(os.listdir(self.folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [n for n in names if n != LOCK_FILE and any(fnmatch.fnmatchcase(n, p) for p in self.artefacts)]

    def check(self, locked: bool = False) -> str:
        """The checks of the module docstring, read-only: ``"fresh"``, ``"resume"`` or ``"finished"``."""
        if os.path.exists(self.folder) and not os.path.isdir(self.folder):
            raise RunError(f"OUTPUT_DIR {self.folder}: exists and is not a folder")
        manifest = read_manifest(self.folder) or {}
        status = manifest.get("status")
        finished = is_finished(self.folder, self.final_file)
        if manifest.get("stage") not in (None, self.stage):
            raise RunRefused(
                f"OUTPUT_DIR {self.folder} holds a {manifest['stage']} run, not a {self.stage} run: "
                "choose another OUTPUT_DIR"
            )
        if finished:
            if self.resume:
                drift = finished_run_drift(self.folder, self.config_text, self.same_run, self.defaults_text)
                if drift:
                    raise RunRefused(
                        f"--resume: OUTPUT_DIR {self.folder} holds a finished run{self._method(manifest)} "
                        f"whose config differs from the one asked for in {describe_drift(drift)}; a "
                        "finished run is never changed (nothing was touched): choose another OUTPUT_DIR"
                    )
                return FINISHED
            ended = f", ended {manifest['ended']}" if manifest.get("ended") else ""
            raise RunRefused(
                f"OUTPUT_DIR {self.folder} holds a finished run{self._method(manifest)}{ended}; "
                "a finished run is never overwritten: choose another OUTPUT_DIR"
            )
        if not self.main:
            return RESUME if self.resume else FRESH
        if status == "running" and not locked:
            lock = RunLock(self.folder)
            if lock.is_held():
                raise lock.refusal()
        if not self.resume:
            found = self.found_artefacts()
            if found:
                what = f"{status} run" if status else "run"
                if status == "running":  # and nobody holds the lock
                    what = "run that was killed (status still 'running')"
                shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
                what = f"{'an' if what[0] in 'aeiou' else 'a'} {what}{self._method(manifest)}"
                raise RunRefused(
                    f"OUTPUT_DIR {self.folder} already holds {what} ({shown}): "
                    "pass --resume to continue it, or choose another OUTPUT_DIR"
                )
            return FRESH
        self._check_drift()
        return RESUME

    @staticmethod
    def _method(manifest: dict[str, Any]) -> str:
        return f" of {manifest['method']}" if manifest.get("method") else ""

    def _check_drift(self) -> None:
        path = self._path("config.yaml")
        try:
            with open(path, encoding="utf-8") as f:
                old = f.read()
        except FileNotFoundError:
            return  # nothing ran yet with a config: nothing to drift from
        except OSError as err:
            raise RunError(f"{path}: cannot read ({describe_os_error(err)})") from None
        drift = config_drift(old, self.config_text, self.allowed, self.defaults_text)
        if drift:
            raise RunRefused(
                f"--resume: the config differs from the run's {path} in {describe_drift(drift)}; "
                "resume with the run's config (only "
                f"{', '.join(self.allowed) or 'no key'} may change), or choose another OUTPUT_DIR"
            )

    # ------------------------------------------------------------------------------------------
    def open(self) -> str:
        """Check, create the folder, lock it, check again, clean temp files; returns the mode."""
        self.mode = self.check()
        if self.mode == FINISHED or not self.main:
            return self.mode
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as err:
            raise RunError(f"OUTPUT_DIR {self.folder}: cannot create it ({describe_os_error(err)})") from None
        self.lock = RunLock(self.folder, self.command).acquire()
        try:
            self.mode = self.check(locked=True)  # another process may have changed it before we held the lock
            if self.mode == FINISHED:
                self.close()
                return self.mode
            self.lock.record_holder()
            remove_stale_temps(self.folder)
        except BaseException:
            self.close()
            raise
        return self.mode

    def start(self, **fields: Any) -> None:
        """Write ``run.json`` with status ``running`` (keeping the first start time of a resumed run)."""
        if not self.main:
            return
        previous = read_manifest(self.folder) or {}
        self.manifest = {
            "stage": self.stage,
            "status": "running",
            "method": self.method,
            "config_hash": config_hash(self.config_text),
            "started": previous.get("started") if self.mode == RESUME and previous.get("started") else now(),
            "last_started": now(),
            "ended": None,
            "attempts": [*_attempts(previous), _attempt()],
            "command": self.command,
            "resume_command": self.resume_command,
            "versions": versions(),
            "error": None,
            "interrupted": None,
        }
        for key in ("epoch", "iteration"):
            if self.mode == RESUME and key in previous:
                self.manifest[key] = previous[key]
        self.manifest.update(fields)
        write_manifest(self.folder, self.manifest)

    def update(self, **fields: Any) -> None:
        """Record ``fields`` (e.g. the newest checkpointed epoch) in ``run.json``."""
        if self.main and self.manifest:
            self.manifest.update(fields)
            write_manifest(self.folder, self.manifest)

    def _end(self, status: str, **fields: Any) -> None:
        if self.main and self.manifest:
            self.manifest.update(status=status, ended=now(), **fields)
            attempts = self.manifest.get("attempts")
            if isinstance(attempts, list) and attempts:
                how = fields.get("interrupted") or fields.get("error")
                attempts[-1].update(ended=self.manifest["ended"], end=f"{status}: {how}" if how else status)
            write_manifest(self.folder, self.manifest)

    def finish(self, **fields: Any) -> None:
        """Status ``finished``: from now on the folder is never written again."""
        self._end("finished", **fields)

    def fail(self, error: str) -> None:
        """Status ``failed`` with the one-line ``error``; best effort (the disk may be full)."""
        try:
            self._end("failed", error=error)
        except RunError:
            pass

    def interrupt(self, signum: int, where: str = "") -> None:
        """Status ``interrupted`` by ``signum``; best effort."""
        try:
            self._end("interrupted", interrupted=f"{signal_name(signum)}{' ' + where if where else ''}")
        except RunError:
            pass

    def close(self) -> None:
        """Release the lock."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @contextmanager
    def recording(self) -> Iterator[RunFolder]:
        """The run's life after :meth:`open`, for both stages: whatever ends the block is recorded
        in ``run.json`` (an :class:`~salfmix.runs.signals.Interrupted` as ``interrupted``; a
        KeyboardInterrupt, raised before the stop handlers were installed, as SIGINT and re-raised
        as Interrupted; any other exception as ``failed`` with its message), then the lock is
        released. A block that ends normally has called :meth:`finish` itself."""
        try:
            yield self
        except Interrupted as err:
            self.interrupt(err.signum, err.where)
            raise
        except KeyboardInterrupt:
            self.interrupt(signal.SIGINT, "before training started")
            raise Interrupted(signal.SIGINT, "before training started") from None
        except Exception as err:
            self.fail(" ".join(str(err).split()) or type(err).__name__)
            raise
        finally:
            self.close()
