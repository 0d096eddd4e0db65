"""``Res5ROIHeadsExtraNorm``: the C4 box head of MoCo's detection protocol.

MoCo (He et al., 2020) fine-tunes R50-C4 with a normalisation layer appended after the res5
stage that runs per region (the head's own copy of res5). The layer is Detectron2's norm named
by ``MODEL.RESNETS.NORM`` (SyncBN in that protocol) and is named ``res5.norm``, so checkpoints
trained with MoCo's head load into this one. It is not in any backbone checkpoint: it starts
from the norm's default initialisation.
"""

from __future__ import annotations

from torch import nn

import detection  # noqa: F401  (restores the names Detectron2 0.6 needs before it is imported)

from detectron2.config import CfgNode
from detectron2.layers import get_norm
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads

__all__ = ["Res5ROIHeadsExtraNorm"]


if "Res5ROIHeadsExtraNorm" in ROI_HEADS_REGISTRY:  # e.g. MoCo's train_net.py imported first
    Res5ROIHeadsExtraNorm = ROI_HEADS_REGISTRY.get("Res5ROIHeadsExtraNorm")
else:

    @ROI_HEADS_REGISTRY.register()
    class Res5ROIHeadsExtraNorm(Res5ROIHeads):
        """``Res5ROIHeads`` with a ``MODEL.RESNETS.NORM`` layer after its res5 blocks."""

        @classmethod
        def _build_res5_block(cls, cfg: CfgNode) -> tuple[nn.Sequential, int]:
            blocks, out_channels = super()._build_res5_block(cfg)
            res5 = nn.Sequential(*blocks)
            res5.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, out_channels))
            return res5, out_channels
