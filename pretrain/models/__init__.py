"""Classification models."""
from pretrain.models.checkpoint import load_resnet50, read_state_dict

__all__ = ["load_resnet50", "read_state_dict"]
