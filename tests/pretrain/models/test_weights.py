"""Reading classifier checkpoints."""

import pytest
import torch
import torchvision

from pretrain.models import load_resnet50, read_state_dict


def test_reads_ours_plain_and_ddp(tmp_path):
    state = torchvision.models.resnet50(num_classes=5).state_dict()
    for name, obj in [
        ("plain", state),
        ("ours", {"model": state, "epoch": 3}),
        ("ddp", {"model": {f"module.{k}": v for k, v in state.items()}}),
    ]:
        path = tmp_path / f"{name}.pth"
        torch.save(obj, path)
        loaded = read_state_dict(str(path))
        assert set(loaded) == set(state)
        assert load_resnet50(str(path)).fc.out_features == 5


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth: checkpoint not found"):
        read_state_dict(str(tmp_path / "missing.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00\x01 definitely not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth: not a readable PyTorch checkpoint"):
        read_state_dict(str(garbage))
    other = tmp_path / "other.pth"
    torch.save({"model": torchvision.models.resnet18().state_dict()}, other)
    with pytest.raises(ValueError, match="other.pth: not a torchvision ResNet-50 checkpoint"):
        load_resnet50(str(other))
    weird = tmp_path / "weird.pth"
    torch.save([1, 2, 3], weird)
    with pytest.raises(ValueError, match="weird.pth: expected a state dict"):
        read_state_dict(str(weird))
