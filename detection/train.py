"""Fine-tuning and evaluating Faster R-CNN on VOC: Detectron2's DefaultTrainer, minimally extended.

What the trainer adds to ``DefaultTrainer``: the VOC evaluator with per-class AP50, the results
saved as ``OUTPUT_DIR/eval_results.json``, and DDP without ``device_ids`` for a CPU model (so
``torchrun --nproc_per_node=2`` with gloo works). ``setup`` adds the checks Detectron2 leaves
out (config keys, dataset folders and annotations, the weights file and its input layout, AMP
without a GPU) before anything is built. ``run`` writes ``run_info.json`` (with the run's
protocol) and ``pretrain_metrics.json`` for the reports, and trains under the run-folder rules
of :mod:`detection.run_folder` (lock, ``run.json``, resume checks, stop signals).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import detection  # noqa: F401  (restores the names Detectron2 0.6 needs before it is imported)
import detection.roi_heads  # noqa: F401  (registers Res5ROIHeadsExtraNorm)
from detection.checkpoint import SafeCheckpointer
from detection.config import load_config, resolve_seed
from detection.convert import check_detection_weights
from detection.data import prepare_datasets
from detection.evaluation import PerClassVOCEvaluator, save_eval_results
from detection.files import PRETRAIN_METRICS_FILE, RUN_INFO_FILE
from detection.protocol import UNKNOWN, protocol_label
from detection.run_folder import (
    StopHook,
    adopt_recorded_seed,
    check_evaluation_target,
    keep_run_config,
    lock_for_evaluation,
    open_training_run,
    truncate_metrics,
)
from salfmix.errors import DetectionSetupError
from salfmix.runs.files import atomic_write_json
from salfmix.runs.folder import FINISHED
from salfmix.runs.signals import Interrupted, StopSignals

from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer, default_setup
from detectron2.engine import defaults as d2_defaults
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

__all__ = ["Trainer", "check_setup", "init_torchrun", "read_pretrain_metrics", "run", "setup"]


def _cpu_ddp(model: torch.nn.Module, **kwargs: Any) -> torch.nn.Module:
    # Detectron2's create_ddp_model always passes device_ids=[local_rank], which DDP refuses
    # for a CPU module; without device_ids DDP runs the module where it is.
    if comm.get_world_size() == 1:
        return model
    return DistributedDataParallel(model, **kwargs)


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` with the VOC evaluator, saved results and CPU DDP."""

    def __init__(self, cfg: CfgNode) -> None:
        # DefaultTrainer.__init__ builds its checkpointer, and wraps the model with the module-level
        # create_ddp_model; swap them only while the parent constructor runs.
        saved = d2_defaults.create_ddp_model, d2_defaults.DetectionCheckpointer
        if cfg.MODEL.DEVICE == "cpu" and comm.get_world_size() > 1:
            d2_defaults.create_ddp_model = _cpu_ddp
        d2_defaults.DetectionCheckpointer = SafeCheckpointer
        try:
            super().__init__(cfg)
        finally:
            d2_defaults.create_ddp_model, d2_defaults.DetectionCheckpointer = saved

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None) -> PerClassVOCEvaluator:
        """Detectron2's VOC evaluator with per-class AP50 (``SALFMIX.PER_CLASS_AP``)."""
        if MetadataCatalog.get(dataset_name).get("evaluator_type") != "pascal_voc":
            raise DetectionSetupError(
                f"DATASETS.TEST: {dataset_name} is not a VOC dataset; only VOC evaluation is set up"
            )
        return PerClassVOCEvaluator(dataset_name, per_class=cfg.SALFMIX.PER_CLASS_AP)

    @classmethod
    def test(cls, cfg: CfgNode, model: torch.nn.Module, evaluators: Any = None) -> dict[str, Any]:
        """Evaluate like DefaultTrainer, then save the results to ``OUTPUT_DIR/eval_results.json``."""
        results = super().test(cfg, model, evaluators)
        if comm.is_main_process() and results:
            per_dataset = results if len(cfg.DATASETS.TEST) > 1 else {cfg.DATASETS.TEST[0]: results}
            try:
                iteration: int | None = get_event_storage().iter
            except AssertionError:  # no training in progress: --eval-only
                iteration = None
            save_eval_results(
                per_dataset,
                cfg.OUTPUT_DIR,
                iteration,
                cfg.SOLVER.MAX_ITER,
                weights=cfg.MODEL.WEIGHTS if iteration is None else None,
            )
        return results


def check_setup(args: argparse.Namespace) -> CfgNode:
    """Load the config and run every check that needs no model: datasets and weights file.

    Returns the config (not frozen). Raises :class:`DetectionSetupError` with a one-line
    message naming the file or key at fault.
    """
    cfg = load_config(args.config_file, args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise DetectionSetupError(
            f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but no CUDA device is available; add MODEL.DEVICE cpu"
        )
    if cfg.SOLVER.AMP.ENABLED and not cfg.MODEL.DEVICE.startswith("cuda"):
        raise DetectionSetupError(
            f"SOLVER.AMP.ENABLED needs a GPU (Detectron2's AMP trainer is CUDA-only) but MODEL.DEVICE is "
            f"{cfg.MODEL.DEVICE!r}; add SOLVER.AMP.ENABLED False"
        )
    _check_datasets(cfg, getattr(args, "datasets_validated", False))
    if cfg.SALFMIX.CHECK_WEIGHTS and cfg.MODEL.WEIGHTS:
        check_detection_weights(cfg.MODEL.WEIGHTS, cfg.INPUT.FORMAT, cfg.MODEL.RESNETS.STRIDE_IN_1X1)
    if cfg.SALFMIX.PRETRAIN_METRICS:
        read_pretrain_metrics(cfg.SALFMIX.PRETRAIN_METRICS)
    return cfg


def _check_datasets(cfg: CfgNode, validated: bool) -> None:
    """Register and check the datasets; parse every annotation in one process only.

    ``validated``: the launching process already parsed them (``salfmix.cli.train_detection``
    does before spawning GPU workers). Otherwise, in a multi-process job (torchrun), the main
    process parses them and every process raises the first error any of them found, so a bad
    file stops the whole job in one line instead of leaving the others waiting.
    """
    if validated or comm.get_world_size() == 1:
        prepare_datasets(cfg, validate=not validated)
        return
    error = ""
    try:
        prepare_datasets(cfg, validate=comm.is_main_process())
    except DetectionSetupError as err:
        error = str(err)
    found = [e for e in comm.all_gather(error) if e]
    if found:
        raise DetectionSetupError(found[0])


def read_pretrain_metrics(path: str) -> dict[str, Any]:
    """``top1_err``/``top5_err`` from a JSON object, or from the last record of a JSON-lines
    file that has both (pretraining's ``metrics.jsonl`` holds one record per epoch)."""
    what = f"SALFMIX.PRETRAIN_METRICS {path}"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if path.endswith(".jsonl"):
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = [json.loads(text)]
    except (OSError, ValueError) as err:
        raise DetectionSetupError(f"{what}: not a readable JSON file ({err})") from None
    keys = ("top1_err", "top5_err")
    found = [r for r in records if isinstance(r, dict) and all(isinstance(r.get(k), (int, float)) for k in keys)]
    if not found:
        raise DetectionSetupError(f"{what}: expected numbers 'top1_err' and 'top5_err'")
    return {**{k: float(found[-1][k]) for k in keys}, "source": os.path.abspath(path)}


def _write_run_files(cfg: CfgNode, args: argparse.Namespace) -> None:
    path = os.path.join(cfg.OUTPUT_DIR, RUN_INFO_FILE)
    info: dict[str, Any] = {}
    if os.path.isfile(path):  # written by a pipeline before training: keep what it recorded
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    ours = {
        # the report groups runs by method: without SALFMIX.METHOD, the run folder's name
        "method": cfg.SALFMIX.METHOD or info.get("method") or os.path.basename(os.path.normpath(cfg.OUTPUT_DIR)),
        "seed": cfg.SEED,
        "weights": cfg.MODEL.WEIGHTS,
        "config_file": args.config_file,
        "train_datasets": list(cfg.DATASETS.TRAIN),
        "test_datasets": list(cfg.DATASETS.TEST),
        "world_size": comm.get_world_size(),
        # the protocol as trained (after Detectron2's rescaling to this world size); an
        # evaluation alone cannot know it
        "protocol": UNKNOWN if getattr(args, "eval_only", False) else protocol_label(cfg, comm.get_world_size()),
    }
    ours = {k: v for k, v in ours.items() if v not in ("", None)}
    if getattr(args, "eval_only", False):
        # evaluating a finished run in its own folder must not rewrite how it was trained
        ours = {k: v for k, v in ours.items() if k not in info}
        ours["eval_weights"] = cfg.MODEL.WEIGHTS
    info.update(ours)
    atomic_write_json(path, info)
    if cfg.SALFMIX.PRETRAIN_METRICS:
        metrics = read_pretrain_metrics(cfg.SALFMIX.PRETRAIN_METRICS)
        atomic_write_json(os.path.join(cfg.OUTPUT_DIR, PRETRAIN_METRICS_FILE), metrics)


def setup(args: argparse.Namespace) -> CfgNode:
    """The checked, frozen config of this process; for training, as it runs on this world size.

    Detectron2's ``DefaultTrainer`` rescales batch, lr and schedule from
    ``SOLVER.REFERENCE_WORLD_SIZE`` when it is built; doing it here first (a second call changes
    nothing) makes ``config.yaml`` and the resume check see the config that actually runs.
    """
    cfg = check_setup(args)
    adopt_recorded_seed(cfg, args.resume and not args.eval_only)
    resolve_seed(cfg)
    if not args.eval_only:
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
    cfg.freeze()
    return cfg


def _start_logging(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Detectron2's logging and config.yaml; run_info.json (and pretrain_metrics.json)."""
    with keep_run_config(cfg.OUTPUT_DIR, active=args.eval_only):
        default_setup(cfg, args)
    if not cfg.MODEL.WEIGHTS and not args.eval_only:
        logging.getLogger("detectron2").warning("MODEL.WEIGHTS is empty: the backbone starts from random weights")
    if comm.is_main_process():
        _write_run_files(cfg, args)


def _evaluate(cfg: CfgNode, args: argparse.Namespace) -> Any:
    check_evaluation_target(cfg.OUTPUT_DIR, cfg.MODEL.WEIGHTS)
    lock = lock_for_evaluation(cfg.OUTPUT_DIR)  # a training run in this folder must not change under us
    try:
        _start_logging(cfg, args)
        model = Trainer.build_model(cfg)
        checkpointer = SafeCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        if cfg.SALFMIX.CHECK_WEIGHTS and cfg.MODEL.WEIGHTS and not args.resume:
            checkpointer.check_trunk_coverage(cfg.MODEL.WEIGHTS)
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    finally:
        if lock is not None:
            lock.release()


def run(args: argparse.Namespace) -> Any:
    """Train (or, with ``args.eval_only``, evaluate) in this process; Detectron2's ``main``.

    Training runs under the rules of :mod:`detection.run_folder` (lock, ``run.json``, resume
    checks, stop signals); a ``--resume`` of a finished run logs so and returns None.
    """
    cfg = setup(args)
    if args.eval_only:
        return _evaluate(cfg, args)
    folder = open_training_run(cfg, args)
    if folder.mode == FINISHED:
        if comm.is_main_process():
            print(f"{cfg.OUTPUT_DIR}: the run is already finished (model_final.pth); nothing to do")
        return None
    # The handlers cover the setup too (logging, datasets, model, weights): a signal there stops
    # the run before training with run.json saying so, instead of killing it mid-setup.
    stop = StopSignals()
    with folder.recording(), stop:
        _start_logging(cfg, args)
        trainer = Trainer(cfg)
        resuming = args.resume and trainer.checkpointer.has_checkpoint()
        if cfg.SALFMIX.CHECK_WEIGHTS and cfg.MODEL.WEIGHTS and not resuming:
            trainer.checkpointer.check_trunk_coverage(cfg.MODEL.WEIGHTS)
        trainer.resume_or_load(resume=args.resume)
        if comm.is_main_process():  # a record per iteration, never two: cut back to the checkpoint
            truncate_metrics(cfg.OUTPUT_DIR, trainer.start_iter)
        signum = stop.signum or 0
        if comm.get_world_size() > 1:  # every process stops, or none
            signum = max(comm.all_gather(signum))
        if signum:
            raise Interrupted(signum, "before training started")
        trainer.register_hooks([StopHook(stop)])
        results = trainer.train()
        folder.finish(iteration=cfg.SOLVER.MAX_ITER)
        return results


def init_torchrun() -> bool:
    """Join the process group of a ``torchrun`` job (gloo on the CPU, NCCL on GPUs).

    Returns False when this process was not started by torchrun with more than one process.
    Detectron2's ``launch`` does the same for the processes it spawns; here torchrun spawned
    them, so the per-machine group Detectron2 needs (``comm._LOCAL_PROCESS_GROUP``) is set here.
    """
    if "LOCAL_RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if dist.is_initialized():
        return True
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo", init_method="env://")
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))
    machine = dist.get_rank() // local_size
    for i in range(dist.get_world_size() // local_size):
        # new_group is collective: every rank creates every machine's group
        group = dist.new_group(list(range(i * local_size, (i + 1) * local_size)))
        if i == machine:
            comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()
    return True
