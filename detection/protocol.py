"""The fine-tuning protocol a detection run followed, as one short label.

Detection numbers are only comparable under one protocol: the paper's FrozenBN R50-C4 and
MoCo's synchronised-BN R50-C4 differ by several AP on the same backbone, and Detectron2
rescales batch, learning rate and schedule when the number of GPUs differs from
``SOLVER.REFERENCE_WORLD_SIZE``. The label names what was run: backbone layout, normalisation,
frozen stages, precise BN, and the solver as trained after that rescaling, e.g.
``R50-C4+norm naiveSyncBN freeze_at 0 precise-BN, batch 8, lr 0.02, 24000 iter (steps 18000, 22000)``.
It is written to ``run_info.json`` at the start of training and read by the report, which refuses
to average runs whose labels differ.

This module reads plain mappings (a Detectron2 ``CfgNode`` or the dict of a saved
``config.yaml``) and does not import Detectron2, so the report stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["UNKNOWN", "protocol_from_config", "protocol_label", "scaled_solver"]

UNKNOWN = "unknown"
# Norms that have BN statistics for TEST.PRECISE_BN to recompute (Detectron2's get_norm names).
_BN_NORMS = ("BN", "SyncBN", "naiveSyncBN", "naiveSyncBN_N", "nnSyncBN")


def scaled_solver(solver: Mapping[str, Any], world_size: int) -> dict[str, Any]:
    """Batch, lr, iterations, steps and warmup as trained on ``world_size`` processes.

    The arithmetic of Detectron2's ``DefaultTrainer.auto_scale_workers`` (the tests hold the two
    together): with ``REFERENCE_WORLD_SIZE`` R > 0 and R != world_size, the per-process batch is
    kept, the lr scales with the total batch and the schedule inversely.
    """
    out = {
        "batch": int(solver["IMS_PER_BATCH"]),
        "lr": float(solver["BASE_LR"]),
        "max_iter": int(solver["MAX_ITER"]),
        "steps": tuple(int(s) for s in solver["STEPS"]),
        "warmup": int(solver["WARMUP_ITERS"]),
    }
    reference = int(solver.get("REFERENCE_WORLD_SIZE", 0) or 0)
    if reference and reference != world_size:
        scale = world_size / reference
        out["batch"] = int(round(out["batch"] * scale))
        out["lr"] = out["lr"] * scale
        out["max_iter"] = int(round(out["max_iter"] / scale))
        out["steps"] = tuple(int(round(s / scale)) for s in out["steps"])
        out["warmup"] = int(round(out["warmup"] / scale))
    return out


def protocol_label(cfg: Mapping[str, Any], world_size: int) -> str:
    """The label of the protocol ``cfg`` trains with on ``world_size`` processes.

    Raises KeyError / TypeError / ValueError when ``cfg`` lacks a key it reads (a partial file).
    """
    model = cfg["MODEL"]
    depth = model["RESNETS"]["DEPTH"]
    fpn = "fpn" in str(model["BACKBONE"]["NAME"]).lower()
    layout = f"R{depth}-{'FPN' if fpn else 'C4'}"
    if model["ROI_HEADS"]["NAME"] == "Res5ROIHeadsExtraNorm":
        layout += "+norm"  # MoCo's extra norm after the per-region res5
    norm = str(model["RESNETS"]["NORM"]) or "none"
    parts = [layout, norm]
    fpn_norm = str(model.get("FPN", {}).get("NORM", "")) if fpn else ""
    if fpn and fpn_norm != norm:
        parts.append(f"(FPN {fpn_norm or 'no norm'})")
    parts.append(f"freeze_at {int(model['BACKBONE']['FREEZE_AT'])}")
    norms = {norm, fpn_norm}
    if cfg["TEST"]["PRECISE_BN"]["ENABLED"] and norms & set(_BN_NORMS):
        parts.append("precise-BN")
    s = scaled_solver(cfg["SOLVER"], world_size)
    steps = ", ".join(str(x) for x in s["steps"]) or "none"
    return f"{' '.join(parts)}, batch {s['batch']}, lr {s['lr']:g}, {s['max_iter']} iter (steps {steps})"


def protocol_from_config(cfg: Mapping[str, Any] | None, world_size: int | None) -> str:
    """``protocol_label`` of a saved config, or ``UNKNOWN`` when the config is missing or partial,
    or when it rescales with the world size and that is not known."""
    if not cfg:
        return UNKNOWN
    try:
        reference = int(cfg["SOLVER"].get("REFERENCE_WORLD_SIZE", 0) or 0)
        if world_size is None:
            if reference:
                return UNKNOWN
            world_size = 1
        return protocol_label(cfg, int(world_size))
    except (KeyError, TypeError, ValueError, AttributeError):
        return UNKNOWN
