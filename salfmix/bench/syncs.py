"""Host synchronisations per training step, counted on the emulated CUDA device.

``syncs_per_step(method, source)`` trains a small ResNet-20 on generated TinyImageNet-layout data
(64 px, batch 8) under :func:`salfmix.bench.emulated_device.emulated_device`: one warm-up epoch
(the saliency cache's first visits), then one measured epoch of ``steps`` steps with the config's
defaults otherwise (TRAIN.LOG_PERIOD, channels_last, the progress bar on). It returns the syncs of
the measured epoch divided by its steps and where they came from. A CUDA run's steps never wait
for the host when this is at most the monitor's periodic reads (one per LOG_PERIOD steps and one
at the end of the epoch); ``make bench`` prints it for every method and saliency source.
"""

from __future__ import annotations

import os
import tempfile

from salfmix.bench.emulated_device import EMULATED, emulated_device


def syncs_per_step(
    method: str, source: str = "fresh", steps: int = 30, workdir: str | None = None, opts: list[str] | None = None
) -> tuple[float, str]:
    """``(syncs per step, summary by source line)`` of one steady-state epoch of ``method``."""
    import pretrain.engine.trainer as trainer_mod
    from pretrain.config import load_config
    from pretrain.data.demo import write_demo_data

    batch = 8
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = write_demo_data(
            tmp, datasets=("tinyimagenet",), classes=4, train_per_class=steps * batch // 4, val_per_class=1
        )["tinyimagenet"]
        cfg = load_config(
            None,
            [
                "DATA.NAME",
                "tinyimagenet",
                "DATA.ROOT",
                root,
                "DATA.CACHE_DIR",
                os.path.join(tmp, "c"),
                "OUTPUT_DIR",
                os.path.join(tmp, "out"),
                "MODEL.ARCH",
                "resnet20",
                "MODEL.INPUT_SIZE",
                "32",
                "SOLVER.BATCH_SIZE",
                str(batch),
                "MIX.METHOD",
                method,
                "MIX.SALIENCY",
                source,
                "MIX.N",
                "4",
                "MIX.START_EPOCH",
                "1",
                *(opts or []),
            ],
        )
        real = trainer_mod.dist_utils.init_distributed
        trainer_mod.dist_utils.init_distributed = lambda: (0, 1, EMULATED)
        try:
            with emulated_device() as emu:
                trainer = trainer_mod.Trainer(cfg)
                trainer.train_epoch(1)
                emu.reset()
                trainer.train_epoch(2)
                return emu.count() / len(trainer.data.train_loader), emu.summary()
        finally:
            trainer_mod.dist_utils.init_distributed = real


def all_syncs(methods: list[str] | None = None, steps: int = 30) -> dict[str, float]:
    """``{"syncs_per_step_<method>_<source>": value}`` for every method (both sources for those
    that take saliency)."""
    from pretrain.mixing import MIXERS

    out: dict[str, float] = {}
    for method in methods or list(MIXERS):
        for source in ("fresh", "cached") if MIXERS[method].needs_saliency else ("fresh",):
            out[f"syncs_per_step_{method}_{source}"], _ = syncs_per_step(method, source, steps)
    return out
