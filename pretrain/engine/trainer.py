"""The pretraining loop: one epoch of mixed training, evaluation, checkpoints, resume.

Runs single-process or under ``torchrun`` (DDP: NCCL on GPUs, gloo on the CPU). Rank 0 writes
the checkpoints, metrics and the resolved config; every rank keeps identical RNG streams
except the augmentation and mixing generators, which are seeded per rank.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch import Tensor

from pretrain.data.loader import DevicePrefetcher, keep_freed_memory
from pretrain.engine import distributed as dist_utils
from pretrain.engine.builders import (
    build_mixer,
    build_model,
    build_optimizer,
    build_saliency_cache,
    build_scheduler,
    check_mix_config,
)
from pretrain.engine.checkpoint import (
    last_checkpoint,
    load_checkpoint,
    rng_states,
    save_epoch_checkpoint,
    set_rng_states,
)
from pretrain.engine.metrics import MetricsWriter, topk_correct
from pretrain.engine.monitor import StepMonitor
from pretrain.engine.saliency_cache import CachedSaliency, CropGeometry, probe_size
from pretrain.engine.training_data import build_data
from pretrain.mixing import mix_loss
from pretrain.mixing.base import unmixed
from pretrain.mixing.saliency import gradient_saliency
from salfmix.runs.files import atomic_torch_save, atomic_write_text
from salfmix.runs.signals import Interrupted


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or Inf."""


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Builds everything from a frozen config and trains; see :meth:`train`."""

    def __init__(self, cfg: CfgNode) -> None:
        self.cfg = cfg
        self.rank, self.world, self.device = dist_utils.init_distributed()
        if self.device.type == "cpu":  # the batch buffers are reused every step (see keep_freed_memory)
            keep_freed_memory()
        seed_everything(cfg.SEED)
        if self.device.type == "cuda":  # fixed input shapes: let cuDNN pick its fastest kernels once
            torch.backends.cudnn.benchmark = True
        self.data = build_data(cfg, self.rank, self.world, self.device)
        self.model = build_model(cfg, self.data.num_classes, self.device)
        self.ddp = None
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_scheduler(cfg, self.optimizer)
        # Per-rank streams for augmentation and mixing, reproducible from SEED.
        self.aug_gen = torch.Generator().manual_seed(cfg.SEED * 1000 + 2 * self.rank + 1)
        self.mix_gen = torch.Generator().manual_seed(cfg.SEED * 1000 + 2 * self.rank + 2)
        check_mix_config(cfg, self.data.input_size)  # MIX.N / MIX.R against the input size, by key
        self.mixer = build_mixer(cfg, self.mix_gen)
        # What runs the forward passes (compiled with TRAIN.COMPILE); self.model stays the plain
        # module whose state_dict is checkpointed.
        self.net: torch.nn.Module = self.model
        self.train_net: torch.nn.Module = self.ddp or self.model
        self.mix = self.mixer.apply
        if cfg.TRAIN.COMPILE:
            self.compile()
        self.monitor = StepMonitor(self.device, self.world, cfg.TRAIN.LOG_PERIOD)
        amp = cfg.TRAIN.AMP == "bf16" and self.device.type == "cuda"
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else contextlib.nullcontext
        self.cache: CachedSaliency | None = None
        src_hw = tuple(int(v) for v in self.data.train.images.shape[1:3])
        cache = build_saliency_cache(cfg, len(self.data.train), src_hw, self.device)
        if cache is not None:
            # A fixed probe of training samples for the per-epoch agreement with fresh saliency.
            order = torch.randperm(len(self.data.train), generator=torch.Generator().manual_seed(cfg.SEED))
            probe = order[: probe_size(len(self.data.train))].sort().values
            self.cache = CachedSaliency(cache, self.net, src_hw, self.data.train_augment.size_hw, self.autocast, probe)
        self.start_epoch = 1
        self.metrics = MetricsWriter(cfg.OUTPUT_DIR) if dist_utils.is_main() else None
        # Set by the run layer (pretrain.engine.runner): polled after every step; told of every checkpoint.
        self.should_stop: Callable[[], int | None] | None = None
        self.on_checkpoint: Callable[[int], None] | None = None

    def compile(self) -> None:
        """TRAIN.COMPILE: ``torch.compile`` the model and the mixer's device work (``Mixer.apply``,
        whole: ``fullgraph``); a mixer that ``runs_on_host`` (PuzzleMix's graph cut) stays eager.
        The eval-mode saliency pass and the evaluation use the same compiled model."""
        self.net = torch.compile(self.model)
        self.train_net = torch.compile(self.ddp) if self.ddp is not None else self.net
        if not self.mixer.runs_on_host:
            self.mix = torch.compile(self.mixer.apply, fullgraph=True)

    # ------------------------------------------------------------------------------------------
    def generator_states(self) -> tuple[Tensor, Tensor, dict[str, Any]]:
        """This rank's augmentation and mixing generator states and its global RNG states."""
        return self.aug_gen.get_state(), self.mix_gen.get_state(), rng_states()

    def state_dict(self, epoch: int, rank_generators: list[tuple[Tensor, Tensor]] | None = None) -> dict[str, Any]:
        """Everything a bit-identical resume needs.

        ``rank_generators``: every rank's :meth:`generator_states`, by rank (gathered by the caller,
        since only rank 0 writes); default: this process's alone.
        """
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epoch,
            "rng": rng_states(),
            "aug_generator": self.aug_gen.get_state(),
            "mix_generator": self.mix_gen.get_state(),
            "rank_generators": rank_generators or [self.generator_states()],
            "loader": self.data.train_loader.state_dict(),
            "saliency_cache": self.cache.cache.state_dict() if self.cache is not None else None,
            "cfg": self.cfg.dump(),
        }

    def resume(self) -> str | None:
        """Load the newest checkpoint in OUTPUT_DIR, if any; returns its path.

        ``metrics.jsonl`` is cut back to the checkpoint's epoch (to nothing without a checkpoint),
        so the resumed run never records an epoch twice.
        """
        path = last_checkpoint(self.cfg.OUTPUT_DIR)
        if path is None:
            if self.metrics is not None:
                self.metrics.truncate_after(0)
            return None
        state = load_checkpoint(path)
        if state["epoch"] > self.cfg.SOLVER.MAX_EPOCHS:
            raise ValueError(
                f"SOLVER.MAX_EPOCHS: {self.cfg.SOLVER.MAX_EPOCHS} is below epoch {state['epoch']} "
                f"of the checkpoint {path}"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_states(state["rng"])
        # Each rank continues its own streams; an older checkpoint (rank 0's only) or more ranks than
        # wrote it: the other ranks keep their freshly seeded streams rather than copy rank 0's.
        gens = state.get("rank_generators") or [(state["aug_generator"], state["mix_generator"])]
        if self.rank < len(gens):
            self.aug_gen.set_state(gens[self.rank][0])
            self.mix_gen.set_state(gens[self.rank][1])
            if len(gens[self.rank]) > 2:  # this rank's own global RNG states (checkpoints since they are kept)
                set_rng_states(gens[self.rank][2])
        self.data.train_loader.load_state_dict(state["loader"])
        if self.cache is not None and state.get("saliency_cache") is not None:
            self.cache.cache.load_state_dict(state["saliency_cache"])
        self.start_epoch = state["epoch"] + 1
        if self.metrics is not None:
            self.metrics.truncate_after(state["epoch"])
        return path

    # ------------------------------------------------------------------------------------------
    def saliency_for(
        self, x: Tensor, targets: Tensor, indices: Tensor, host_indices: Tensor, geometry: CropGeometry | None
    ) -> Tensor | None:
        """The saliency the mixer gets: cached maps (a fresh pass for samples never stored) or a
        fresh pass."""
        if not self.mixer.needs_saliency:
            return None
        if self.cache is not None:
            return self.cache.saliency(x, targets, indices, host_indices, geometry)
        with self.autocast():
            return gradient_saliency(self.net, x, targets, self.mixer.saliency_reduction)

    def train_step(
        self, images_u8: Tensor, targets: Tensor, indices: Tensor, host_indices: Tensor, mixing: bool
    ) -> None:
        """One optimisation step on a batch already on the device. Nothing is read back to the host:
        the loss and the non-finite flags go to :attr:`monitor`, read every TRAIN.LOG_PERIOD steps."""
        augment = self.data.train_augment
        params = augment.sample_params(images_u8.shape[0], images_u8.shape[1], images_u8.shape[2], self.aug_gen)
        x = augment.apply(images_u8, params)
        geometry = self.cache.geometry(params) if self.cache is not None else None
        if self.cfg.MODEL.CHANNELS_LAST:
            x = x.contiguous(memory_format=torch.channels_last)
        saliency = None
        if mixing:
            saliency = self.saliency_for(x, targets, indices, host_indices, geometry)
            result = self.mix(x, targets, saliency, self.mixer.draw(x.shape, x.device))
        else:
            result = unmixed(x, targets)
        inputs = result.images
        if self.cache is not None:
            inputs = inputs.detach().requires_grad_(True)
        with self.autocast():
            logits = self.train_net(inputs)
            loss = mix_loss(logits, result)
        self.monitor.add(loss, saliency, images_u8.shape[0])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.cache is not None:
            self.cache.store(indices, host_indices, inputs.grad, result.own, geometry)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over this rank's shard of the training set; the monitor is read every
        TRAIN.LOG_PERIOD steps (a non-finite loss or saliency stops the run there, a stop signal
        stops every rank there) and after the last step."""
        self.train_net.train()
        loader = self.data.train_loader
        loader.set_epoch(epoch)
        mixing = epoch >= self.cfg.MIX.START_EPOCH and self.cfg.MIX.METHOD != "none"
        monitor, total = self.monitor, len(loader)
        monitor.start_epoch()
        start = time.perf_counter()
        bar = None
        if self.cfg.TRAIN.PROGRESS and dist_utils.is_main():
            from tqdm import tqdm

            bar = tqdm(total=total, desc=f"epoch {epoch}/{self.cfg.SOLVER.MAX_EPOCHS}", leave=False)
        reading = None
        for images_u8, targets, indices, host_indices in DevicePrefetcher(loader, self.device):
            self.train_step(images_u8, targets, indices, host_indices, mixing)
            step = monitor.steps
            if bar is not None:
                bar.update(1)
            signum = (self.should_stop() or 0) if self.should_stop is not None else 0
            if signum and self.world == 1:  # one process: stop now, nothing to agree on
                self._stop(signum, f"at epoch {epoch}, step {step} of {total}", bar)
            if monitor.due(step == total):
                first = monitor.last_read + 1
                reading = monitor.read(signum)
                self._check_finite(reading, epoch, first, step, total)
                if bar is not None:
                    bar.set_postfix(loss=f"{reading.mean_loss:.3f}")
                if reading.signum:
                    self._stop(reading.signum, f"at epoch {epoch}, step {step} of {total}", bar)
        if bar is not None:
            bar.close()
        if self.cache is not None:
            self.cache.end_epoch()
        elapsed = time.perf_counter() - start
        return {"train_loss": reading.mean_loss, "images_per_s": reading.seen / max(elapsed, 1e-9)}

    def _check_finite(self, reading: Any, epoch: int, first: int, last: int, total: int) -> None:
        """Stop with one line if a step since the last read had a non-finite loss or saliency."""
        steps = f"steps {first}-{last}" if last > first else f"step {first}"
        where = f"at epoch {epoch}, {steps} of {total}"
        if reading.bad_loss:
            raise NonFiniteLossError(f"training loss is not finite (NaN or Inf) {where}")
        if reading.bad_saliency:
            # The saliency pass runs in eval mode, on BatchNorm's running statistics: early in
            # training (tiny batches, the first steps) they can be far off while the training
            # forward, on batch statistics, is still fine.
            raise NonFiniteLossError(
                f"saliency: not finite (NaN or Inf) {where} (the saliency pass runs the model in eval mode: if the "
                "weights are finite, BatchNorm's running statistics have not settled yet; start mixing later, "
                "MIX.START_EPOCH)"
            )

    @staticmethod
    def _stop(signum: int, where: str, bar: Any = None) -> None:
        if bar is not None:
            bar.close()
        raise Interrupted(signum, where)

    def check_stop(self, where: str) -> None:
        """Raise :class:`salfmix.runs.signals.Interrupted` if a stop signal arrived (on any rank: they
        agree). Between epochs: one small all-reduce under DDP."""
        if self.should_stop is None:
            return
        signum = self.should_stop() or 0
        if self.world > 1:  # every rank must stop at the same point, or the others hang in the next collective
            flags = torch.tensor([float(signum == signal.SIGINT), float(signum not in (0, signal.SIGINT))])
            sigint, other = dist_utils.all_reduce_sum(flags.to(self.device)).tolist()
            signum = signal.SIGINT if sigint else signal.SIGTERM if other else 0
        if signum:
            raise Interrupted(signum, where)

    def cache_stats(self, epoch: int) -> dict[str, float]:
        """The cached saliency's agreement with a fresh pass on the fixed probe (see saliency_cache)."""
        probe = self.cache.probe.numpy()
        images = torch.from_numpy(np.asarray(self.data.train.images[probe])).to(self.device)
        targets = torch.from_numpy(self.data.train.labels[probe]).to(self.device)
        # Its own crops, a new draw each epoch: the training streams are not touched.
        generator = torch.Generator().manual_seed(self.cfg.SEED * 100003 + epoch)
        return self.cache.epoch_stats(
            images, targets, self.data.train_augment, self.cfg.MIX.N, generator, self.data.test_batch_size
        )

    @torch.no_grad()
    def evaluate(self, split: str = "test") -> dict[str, float]:
        """Top-1 / top-5 error (%) on the test split, over all ranks; with ``split="train"``, the
        top-1 error and mean cross-entropy of the unaugmented training images."""
        self.model.eval()
        counts = torch.zeros(4, dtype=torch.float64, device=self.device)
        for images_u8, targets in self.data.test_batches(split):
            x = self.data.test_transform(images_u8.to(self.device, non_blocking=True))
            if self.cfg.MODEL.CHANNELS_LAST:
                x = x.contiguous(memory_format=torch.channels_last)
            targets = targets.to(self.device, non_blocking=True)
            with self.autocast():
                logits = self.net(x).float()
            c1, c5 = topk_correct(logits, targets, (1, 5))
            loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum").double()
            counts += torch.stack(
                [
                    torch.tensor(c1, dtype=torch.float64),
                    torch.tensor(c5, dtype=torch.float64),
                    torch.tensor(targets.shape[0], dtype=torch.float64),
                    loss.cpu(),
                ]
            ).to(self.device)
        c1, c5, n, loss = dist_utils.all_reduce_sum(counts).tolist()
        if split == "train":
            return {"train_top1_err": 100.0 * (1 - c1 / n), "train_eval_loss": loss / n}
        return {"top1_err": 100.0 * (1 - c1 / n), "top5_err": 100.0 * (1 - c5 / n)}

    # ------------------------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        """Train from ``start_epoch`` to MAX_EPOCHS; returns the last epoch's metrics."""
        cfg, out = self.cfg, self.cfg.OUTPUT_DIR
        if dist_utils.is_main():
            os.makedirs(out, exist_ok=True)
            atomic_write_text(os.path.join(out, "config.yaml"), cfg.dump())
        record: dict[str, float] = {}
        for epoch in range(self.start_epoch, cfg.SOLVER.MAX_EPOCHS + 1):
            record = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}
            try:
                record.update(self.train_epoch(epoch))
            except NonFiniteLossError as err:
                last = last_checkpoint(out)
                raise NonFiniteLossError(f"{err}; stopped. Last good checkpoint: {last or 'none'}") from None
            self.scheduler.step()
            # Every rank continues from, evaluates and checkpoints rank 0's running statistics (a
            # resume restores exactly these); once per epoch, not per step.
            dist_utils.broadcast_buffers(self.model)
            last_epoch = epoch == cfg.SOLVER.MAX_EPOCHS
            if epoch % cfg.TRAIN.EVAL_PERIOD == 0 or last_epoch:
                record.update(self.evaluate())
                if cfg.TEST.TRAIN_SET:
                    record.update(self.evaluate("train"))
            if self.cache is not None and dist_utils.is_main():
                record.update(self.cache_stats(epoch))
            checkpoint = epoch % cfg.TRAIN.CHECKPOINT_PERIOD == 0 or last_epoch
            generators = dist_utils.all_gather_object(self.generator_states()) if checkpoint else None
            if dist_utils.is_main():
                self.metrics.write(record)
                if checkpoint:
                    save_epoch_checkpoint(self.state_dict(epoch, generators), out, epoch, cfg.TRAIN.KEEP_CHECKPOINTS)
                    if self.on_checkpoint is not None:
                        self.on_checkpoint(epoch)
            dist_utils.barrier()
            if not last_epoch:
                self.check_stop(f"after epoch {epoch}")
        if dist_utils.is_main():
            if not record:  # resumed from the last epoch's checkpoint: nothing left to train
                record = self.metrics.last_record()
            weights = {k: v.contiguous() for k, v in self.model.state_dict().items()}
            final = {
                "model": weights,
                "arch": cfg.MODEL.ARCH,
                "epoch": cfg.SOLVER.MAX_EPOCHS,
                "classes": self.data.classes,
                "metrics": record,
                "cfg": cfg.dump(),
            }
            atomic_torch_save(os.path.join(out, "model_final.pth"), final)
            self.metrics.close()
        return record
