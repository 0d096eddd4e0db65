"""The stages of the pipeline: what each one's run folder says, and running it.

What to do is read from the run manifests (``run.json``, :mod:`salfmix.runs.manifest`), never guessed
from which files happen to exist:

- a run folder whose manifest names another stage or another method is refused (its name
  would lie about what it holds);
- ``finished``: skipped (a detection run whose final evaluation is missing is evaluated);
- any other status, or files of a run without a manifest: resumed (``--resume``; the run layer
  refuses a resume whose config drifted, naming the keys);
- an empty or missing folder: a new run.

One process: the stages' library entry points run in this process
(:func:`pretrain.engine.runner.run_pretraining`, :mod:`detection.convert`,
:func:`detection.train.run`). Several (``num_procs`` > 1): the tools in child processes, as a
user would start them: torchrun for pretraining; Detectron2's launch for detection on GPUs,
torchrun with gloo on the CPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from salfmix.errors import PipelineError, RunError
from salfmix.pipeline.output import ChildSignals
from salfmix.runs.files import atomic_write_json
from salfmix.runs.folder import FINISHED, FRESH, RESUME, RunFolder, is_finished
from salfmix.runs.manifest import now, read_manifest
from salfmix.runs.report import read_yaml
from salfmix.runs.signals import Interrupted, exit_code, signal_name

__all__ = [
    "FINISHED",
    "EVALUATE",
    "FRESH",
    "RESUME",
    "Context",
    "StageFailed",
    "conversion_done",
    "convert",
    "detection_state",
    "evaluate_detection",
    "folder_status",
    "pretrain_state",
    "run_pretrain",
    "train_detection",
]

# A stage's state in its folder, in the run layer's words (plus EVALUATE: trained, the final
# evaluation missing).
EVALUATE = "evaluate"
# The stages' command lines, as modules of the installed package (no file of a checkout needed).
PRETRAIN_MODULE, DETECTION_MODULE = "salfmix.cli.pretrain", "salfmix.cli.train_detection"


class StageFailed(Exception):
    """A stage ended without its result; the message is one line (the log holds the rest)."""


@dataclass
class Context:
    """How stages run: the command recorded in the manifests, the line a stopped stage tells
    the user to run again, the Python of child processes and their environment."""

    command: list[str] = field(default_factory=lambda: [sys.executable, *sys.argv])
    again: str = ""
    python: str = sys.executable
    env: dict[str, str] | None = None
    # Several machines (a multi-node SLURM job): this one's rank and the rendezvous of rank 0.
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = ""
    master_port: int = 29500

    @property
    def main_node(self) -> bool:
        """Whether this machine holds rank 0, the one that writes and checks the run folders."""
        return self.node_rank == 0

    def processes(self, per_node: int) -> bool:
        """Whether a stage of ``per_node`` processes runs in child processes (several processes
        or several machines), not in this one."""
        return per_node > 1 or self.nnodes > 1


# --- what the folders say ---------------------------------------------------------------------


def _owner_check(folder: str, stage: str, label: str) -> dict[str, Any] | None:
    """The folder's manifest (None without one) after refusing one of another stage or method."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise PipelineError(f"{folder}: exists and is not a folder")
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    if manifest.get("stage") not in (None, stage):
        raise PipelineError(f"{folder} holds a {manifest['stage']} run, not a {stage} run: move it away")
    if manifest.get("method") and manifest["method"] != label:
        raise PipelineError(
            f"{folder} holds a run of {manifest['method']}, not of {label}: its name and its run disagree; move it away"
        )
    return manifest


def _legacy_method(folder: str, keys: Sequence[str]) -> str | None:
    """The method a folder from before the manifests says in its config.yaml (``keys`` path)."""
    value: Any = read_yaml(os.path.join(folder, "config.yaml"), strict=False)
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) and value else None


def _state(folder: str, stage: str, label: str, artefacts: Sequence[str], method_keys: Sequence[str]) -> str:
    manifest = _owner_check(folder, stage, label)
    if manifest is None:
        legacy = _legacy_method(folder, method_keys)
        if legacy and legacy != label:
            raise PipelineError(f"{folder} holds a run of {legacy} (config.yaml), not of {label}: move it away")
    if is_finished(folder):
        return FINISHED
    if manifest is not None:
        return RESUME
    probe = RunFolder(folder, stage=stage, config_text="", resume=False, artefacts=artefacts)
    return RESUME if probe.found_artefacts() else FRESH


def folder_status(folder: str) -> str:
    """What a run folder's manifest says (``running``, ``finished``, ...) for a status table;
    ``empty`` when there is no folder, ``no manifest`` when it holds none."""
    if not os.path.isdir(folder):
        return "empty"
    return (read_manifest(folder) or {}).get("status") or "no manifest"


def pretrain_state(folder: str, label: str) -> str:
    """:data:`FRESH`, :data:`RESUME` or :data:`FINISHED` for the pretraining run of ``label`` in ``folder``."""
    from pretrain.engine.runner import ARTEFACTS

    return _state(folder, "pretrain", label, ARTEFACTS, ("MIX", "METHOD"))


def detection_state(folder: str, label: str) -> str:
    """:data:`FRESH`, :data:`RESUME`, :data:`EVALUATE` (trained, final evaluation missing) or :data:`FINISHED`."""
    from detection.report import has_final_results
    from detection.run_folder import ARTEFACTS

    state = _state(folder, "detection", label, ARTEFACTS, ("SALFMIX", "METHOD"))
    if state == FINISHED and not has_final_results(folder):
        return EVALUATE
    return state


# --- running them -----------------------------------------------------------------------------


def _child(ctx: Context, cmd: list[str], what: str) -> None:
    """Run a stage's tool; Ctrl-C / SIGTERM reach it once (:class:`ChildSignals`). In-process
    stages need no such help: Python's own SIGINT handling and the run layer's handlers apply."""
    with ChildSignals() as signals:
        rc = signals.run(cmd, env=ctx.env)
    if rc in (exit_code(signal.SIGINT), exit_code(signal.SIGTERM)):  # stopped at its safe point
        raise Interrupted(rc - 128, f"in {what}")
    if rc > 128:
        hint = " (often the kernel's out-of-memory killer)" if rc - 128 == signal.SIGKILL else ""
        raise StageFailed(f"{what} was ended by {signal_name(rc - 128)}{hint}")
    if rc:
        raise StageFailed(f"{what} exited with status {rc}")
    if signals.signum is not None:  # the stage finished just before the signal reached it
        raise Interrupted(signals.signum, f"after {what}")


def _torchrun(ctx: Context, num_procs: int) -> list[str]:
    # torchrun that ends with the signal's status (no traceback) when its workers were stopped
    cmd = [ctx.python, "-m", "salfmix.torchrun", "--nproc_per_node", str(num_procs)]
    if ctx.nnodes > 1:
        return cmd + [
            "--nnodes",
            str(ctx.nnodes),
            "--node_rank",
            str(ctx.node_rank),
            "--master_addr",
            ctx.master_addr,
            "--master_port",
            str(ctx.master_port),
        ]
    return cmd + ["--standalone"]


def run_pretrain(config: str, opts: Sequence[str], resume: bool, ctx: Context, num_procs: int = 1) -> str | None:
    """Pretrain ``config`` with ``opts`` (which set OUTPUT_DIR); returns a line with the final
    metrics (in this process). Raises :class:`StageFailed` (one line) or
    :class:`salfmix.runs.signals.Interrupted`."""
    if ctx.processes(num_procs):
        cmd = _torchrun(ctx, num_procs) + ["-m", PRETRAIN_MODULE, "--config-file", config, *opts]
        _child(ctx, cmd + (["--resume"] if resume else []), f"torchrun {PRETRAIN_MODULE}")
        return None
    from pretrain.config import load_config
    from pretrain.engine.runner import run_pretraining
    from pretrain.engine.trainer import NonFiniteLossError

    try:
        cfg = load_config(config, list(opts))
        result = run_pretraining(cfg, resume=resume, command=ctx.command, resume_cmd=ctx.again)
    except (RunError, ValueError, FileNotFoundError, NonFiniteLossError) as err:
        raise StageFailed(" ".join(str(err).split())) from None
    shown = ", ".join(f"{k}={v:.4g}" for k, v in result.record.items() if isinstance(v, (int, float)))
    return f"done: {shown}; weights in {os.path.join(cfg.OUTPUT_DIR, 'model_final.pth')}"


def source_key(folder: str) -> dict[str, Any]:
    """What identifies the finished pretraining run a conversion (and the detection run fine-tuned
    from it) was made from: its config hash and end time."""
    manifest = read_manifest(folder) or {}
    if manifest.get("config_hash") and manifest.get("ended"):
        return {"config_hash": manifest["config_hash"], "ended": manifest["ended"]}
    st = os.stat(os.path.join(folder, "model_final.pth"))  # a run from before the manifests
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _record_path(weights: str) -> str:
    return weights[: -len(".pkl")] + ".source.json" if weights.endswith(".pkl") else weights + ".source.json"


def conversion_done(pretrain_dir: str, weights: str) -> bool:
    """Whether ``weights`` was converted from the pretraining run now in ``pretrain_dir``: its
    record, ``<name>.source.json``, names that run's config hash and end time. A pickle without a
    record (converted before the records existed) counts when it is newer than its source, and
    gets its record."""
    from salfmix.runs.report import ReportError, read_json

    record = _record_path(weights)
    if not os.path.isfile(weights):
        return False
    if not os.path.isfile(record):  # converted before the records existed: newer than its source
        source = os.path.join(pretrain_dir, "model_final.pth")
        if os.path.isfile(source) and os.stat(weights).st_mtime_ns >= os.stat(source).st_mtime_ns:
            _write_record(pretrain_dir, weights)
            return True
        return False
    try:
        return read_json(record).get("pretrain_run") == source_key(pretrain_dir)
    except (ReportError, AttributeError, OSError):
        return False


def record_backbone(det_dir: str, key: dict[str, Any] | None) -> None:
    """Write the backbone's pretraining run into ``det_dir/run_info.json`` (kept by the detection
    stage), so a later command can tell which pretraining run the detection run belongs to."""
    from salfmix.runs.report import ReportError, read_json

    path = os.path.join(det_dir, "run_info.json")
    info: dict[str, Any] = {}
    if os.path.isfile(path):
        try:
            found = read_json(path)
            info = found if isinstance(found, dict) else {}
        except ReportError:
            info = {}
    os.makedirs(det_dir, exist_ok=True)
    atomic_write_json(path, {**info, "backbone": key})


def _write_record(pretrain_dir: str, weights: str) -> None:
    atomic_write_json(
        _record_path(weights),
        {
            "source": os.path.abspath(os.path.join(pretrain_dir, "model_final.pth")),
            "converted": now(),
            "pretrain_run": source_key(pretrain_dir),
        },
    )


def convert(pretrain_dir: str, weights: str) -> str:
    """Convert ``pretrain_dir/model_final.pth`` to the Detectron2 pickle ``weights`` (replacing
    it) and record its source; returns a one-line summary. Raises :class:`StageFailed`."""
    from detection.convert import convert_state_dict, read_checkpoint, write_detectron2_pickle
    from salfmix.errors import DetectionSetupError
    from salfmix.runs.files import remove_stale_temps
    from salfmix.runs.signals import StopSignals

    source = os.path.join(pretrain_dir, "model_final.pth")
    remove_stale_temps(os.path.dirname(weights) or ".", dead_writers_only=True)  # of a killed conversion
    # A stop signal waits for the (atomic) write to end: the converted file is complete and kept.
    with StopSignals() as stop:
        try:
            state, note = read_checkpoint(source)
            model = convert_state_dict(state)
            write_detectron2_pickle(model, weights)
            _write_record(pretrain_dir, weights)
        except DetectionSetupError as err:
            raise StageFailed(f"{source}: {err}" if not str(err).startswith(source) else str(err)) from None
        except RunError as err:
            raise StageFailed(str(err)) from None
    if stop.signum is not None:
        raise Interrupted(stop.signum, f"after converting {weights} (complete, kept)")
    return f"wrote {weights}: {len(model)} tensors of a torchvision ResNet-50 in Detectron2 names" + (
        f" ({note})" if note else ""
    )


@contextlib.contextmanager
def _detectron2_logging() -> Iterator[None]:
    """Detectron2 adds its log handlers once per process and output folder (a cached
    ``setup_logger``); a second run in this process would also log into the first run's
    ``log.txt``. Remove and close them after each in-process run."""
    try:
        yield
    finally:
        from detectron2.utils import logger as d2_logger

        for name in ("detectron2", "fvcore", "d2"):
            log = logging.getLogger(name)
            for handler in list(log.handlers):
                log.removeHandler(handler)
                stream = getattr(handler, "stream", None)
                if stream is not None and stream not in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                    stream.close()
        d2_logger.setup_logger.cache_clear()
        d2_logger._cached_log_stream.cache_clear()


def _detection(args_list: list[str], ctx: Context, num_procs: int) -> None:
    if ctx.processes(num_procs):
        import torch

        if torch.cuda.is_available():  # Detectron2's launch: one process per GPU
            cmd = [ctx.python, "-m", DETECTION_MODULE, "--num-gpus", str(num_procs), *args_list]
            if ctx.nnodes > 1:
                cmd[3:3] = [
                    "--num-machines",
                    str(ctx.nnodes),
                    "--machine-rank",
                    str(ctx.node_rank),
                    "--dist-url",
                    f"tcp://{ctx.master_addr}:{ctx.master_port}",
                ]
        else:  # launch cannot start CPU processes: torchrun with gloo
            cmd = _torchrun(ctx, num_procs) + ["-m", DETECTION_MODULE, *args_list]
        _child(ctx, cmd, DETECTION_MODULE)
        return
    import detection  # noqa: F401  (before Detectron2)
    from detection.train import run
    from salfmix.errors import DetectionSetupError

    from detectron2.engine import default_argument_parser

    args = default_argument_parser().parse_args(args_list)
    args.dist_url = "auto"
    args.resume_command = ctx.again
    try:
        with _detectron2_logging():
            run(args)
    except (DetectionSetupError, RunError) as err:
        raise StageFailed(" ".join(str(err).split())) from None


def train_detection(config: str, opts: Sequence[str], resume: bool, ctx: Context, num_procs: int = 1) -> None:
    """Fine-tune and evaluate (``opts`` set OUTPUT_DIR and the weights); raises :class:`StageFailed`
    or :class:`salfmix.runs.signals.Interrupted`."""
    _detection(["--config-file", config, *(["--resume"] if resume else []), *opts], ctx, num_procs)


def evaluate_detection(folder: str, ctx: Context, num_procs: int = 1) -> None:
    """Evaluate the finished model of ``folder`` with the config it was trained with."""
    _detection(
        [
            "--eval-only",
            "--config-file",
            os.path.join(folder, "config.yaml"),
            "MODEL.WEIGHTS",
            os.path.join(folder, "model_final.pth"),
            "OUTPUT_DIR",
            folder,
        ],
        ctx,
        num_procs,
    )
