"""torchvision -> Detectron2 conversion: same features, coverage errors, the tool, weights checks."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

import detection  # noqa: F401  (before Detectron2)
from detection.convert import (
    AUTHOR,
    check_detection_weights,
    convert_state_dict,
    expected_resnet50_shapes,
    rename_key,
)
from salfmix.errors import DetectionSetupError


def test_rename_key_follows_detectron2_names() -> None:
    assert rename_key("conv1.weight") == "stem.conv1.weight"
    assert rename_key("bn1.running_var") == "stem.conv1.norm.running_var"
    assert rename_key("layer1.0.conv2.weight") == "res2.0.conv2.weight"
    assert rename_key("layer4.2.bn3.bias") == "res5.2.conv3.norm.bias"
    assert rename_key("layer2.0.downsample.0.weight") == "res3.0.shortcut.weight"
    assert rename_key("layer3.0.downsample.1.running_mean") == "res4.0.shortcut.norm.running_mean"


def test_convert_drops_classifier_and_counters(torchvision_r50_state: dict[str, torch.Tensor]) -> None:
    out = convert_state_dict(torchvision_r50_state)
    assert len(out) == len(expected_resnet50_shapes()) == 265
    assert not any(k.startswith("fc") or "num_batches_tracked" in k for k in out)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in out.values())
    ddp = {"module." + k: v.to(torch.bfloat16) for k, v in torchvision_r50_state.items()}
    out_ddp = convert_state_dict(ddp)  # DDP prefix removed, bfloat16 read as float32
    assert out_ddp.keys() == out.keys() and out_ddp["res5.2.conv3.weight"].dtype == np.float32


@pytest.mark.parametrize("norm", ["FrozenBN", "BN"])
def test_converted_backbone_matches_torchvision(torchvision_r50_state: dict[str, torch.Tensor], norm: str) -> None:
    import torchvision

    from detection.config import get_detection_cfg

    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone import build_resnet_backbone

    tv = torchvision.models.resnet50(num_classes=10)
    tv.load_state_dict(torchvision_r50_state)
    tv.eval()
    cfg = get_detection_cfg()
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.RESNETS.NORM = norm
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    backbone = build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    converted = {k: torch.from_numpy(v) for k, v in convert_state_dict(torchvision_r50_state).items()}
    incompatible = backbone.load_state_dict(converted, strict=False)
    assert not incompatible.unexpected_keys
    assert all(k.endswith("num_batches_tracked") for k in incompatible.missing_keys)

    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats = backbone(x)
        y = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        for i, name in enumerate(["res2", "res3", "res4", "res5"]):
            y = getattr(tv, f"layer{i + 1}")(y)
            torch.testing.assert_close(feats[name], y, rtol=1e-5, atol=1e-5 * float(y.abs().max()))


@pytest.mark.parametrize(
    "config", ["voc0712_faster_rcnn_R_50_C4_24k_moco.yaml", "voc0712_faster_rcnn_R_50_FPN_24k.yaml"]
)
def test_detectron2_checkpointer_loads_every_converted_tensor(converted_r50: str, config: str) -> None:
    # Detectron2 matches the pickle's names to the model's by suffix ("res5.0..." -> "roi_heads.res5.0...")
    from pathlib import Path

    import detection.roi_heads  # noqa: F401
    from detection.config import load_config

    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    path = Path(__file__).resolve().parents[2] / "configs" / "detection" / config
    cfg = load_config(str(path), ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.NORM", "FrozenBN"])
    model = build_model(cfg)
    DetectionCheckpointer(model).load(converted_r50)
    state = model.state_dict()
    with open(converted_r50, "rb") as f:
        converted = pickle.load(f)["model"]
    for name, value in converted.items():
        matches = [k for k in state if k.endswith("." + name)]
        assert len(matches) == 1, (name, matches)
        np.testing.assert_array_equal(state[matches[0]].numpy(), value)


def _without(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(prefix)}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: _without(s, "layer4."), r"missing layer4 \(all \d+ tensors"),
        (lambda s: _without(s, "layer3.5."), r"missing layer3 \(\d+ of \d+ tensors, e\.g\. layer3\.5\."),
        (lambda s: {**s, "conv1.weight": torch.zeros(64, 3, 3, 3)}, r"conv1\.weight: shape \(64, 3, 3, 3\).*CIFAR"),
        (lambda s: {**s, "layer2.1.conv2.weight": torch.zeros(128, 128, 1, 1)}, r"layer2\.1\.conv2\.weight: shape"),
        (
            lambda s: {**s, "layer3.6.conv1.weight": torch.zeros(256, 1024, 1, 1)},
            r"unexpected tensors \(a deeper ResNet\?\)",
        ),
        (lambda s: {"linear.weight": torch.zeros(10, 512)}, r"missing stem .*layer1"),
    ],
)
def test_incomplete_backbones_are_refused(torchvision_r50_state, change, message) -> None:
    with pytest.raises(DetectionSetupError, match=message):
        convert_state_dict(change(dict(torchvision_r50_state)))


# --- the tool ---------------------------------------------------------------------------------


def _run_tool(load_detection_tool, src: str, dst: str, *flags: str) -> str:
    tool = load_detection_tool("convert_to_detectron2")
    return tool.main(tool.get_parser().parse_args([src, dst, *flags]))


@pytest.mark.parametrize("layout", ["ours", "plain", "ddp"])
def test_tool_accepts_our_plain_and_ddp_checkpoints(
    load_detection_tool, torchvision_r50_state, tmp_path, layout, capsys
) -> None:
    state = dict(torchvision_r50_state)
    obj = {
        "ours": {"model": state, "epoch": 300},
        "plain": state,
        "ddp": {"model": {"module." + k: v for k, v in state.items()}},
    }[layout]
    torch.save(obj, tmp_path / "model_final.pth")
    out = str(tmp_path / "r50.pkl")
    _run_tool(load_detection_tool, str(tmp_path / "model_final.pth"), out)
    with open(out, "rb") as f:
        data = pickle.load(f)
    assert data["__author__"] == AUTHOR and data["matching_heuristics"] is True
    np.testing.assert_array_equal(data["model"]["res4.3.conv2.weight"], state["layer3.3.conv2.weight"].numpy())
    assert "wrote" in capsys.readouterr().out
    assert check_detection_weights(out) == "a converted torchvision ResNet-50"


def test_tool_errors_leave_no_file(load_detection_tool, torchvision_r50_state, tmp_path) -> None:
    src = tmp_path / "cifar.pth"
    torch.save({"model": {**torchvision_r50_state, "conv1.weight": torch.zeros(64, 3, 3, 3)}}, src)
    out = tmp_path / "out" / "r50.pkl"
    with pytest.raises(DetectionSetupError, match=r"cifar\.pth: conv1\.weight: shape"):
        _run_tool(load_detection_tool, str(src), str(out))
    with pytest.raises(DetectionSetupError, match="checkpoint not found"):
        _run_tool(load_detection_tool, str(tmp_path / "nope.pth"), str(out))
    with pytest.raises(DetectionSetupError, match=r"must end with \.pkl"):
        _run_tool(load_detection_tool, str(src), str(tmp_path / "r50.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DetectionSetupError, match="not a readable PyTorch checkpoint"):
        _run_tool(load_detection_tool, str(tmp_path / "junk.pth"), str(out))
    torch.save({"model": {"w": 3}}, tmp_path / "odd.pth")
    with pytest.raises(DetectionSetupError, match="expected a state dict"):
        _run_tool(load_detection_tool, str(tmp_path / "odd.pth"), str(out))
    assert not out.exists()
    assert not out.parent.exists() or not os.listdir(out.parent)  # no temporary file left


def test_write_failure_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    from detection import convert

    def broken_dump(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(convert.pickle, "dump", broken_dump)
    with pytest.raises(RuntimeError):
        convert.write_detectron2_pickle({"stem.conv1.weight": np.zeros(1)}, str(tmp_path / "x.pkl"))
    assert os.listdir(tmp_path) == []


# --- what MODEL.WEIGHTS may be ------------------------------------------------------------------


def test_weights_check(converted_r50, torchvision_r50_state, tmp_path) -> None:
    assert "converted" in check_detection_weights(converted_r50)
    assert "remote" in check_detection_weights("detectron2://ImageNetPretrained/MSRA/R-50.pkl")
    torch.save({"model": torchvision_r50_state}, tmp_path / "tv.pth")
    with pytest.raises(DetectionSetupError, match="torchvision checkpoint.*convert_to_detectron2"):
        check_detection_weights(str(tmp_path / "tv.pth"))
    torch.save({"model": {"backbone.bottom_up.stem.conv1.weight": torch.zeros(1)}}, tmp_path / "d2.pth")
    assert check_detection_weights(str(tmp_path / "d2.pth")) == "a Detectron2 checkpoint"
    with open(converted_r50, "rb") as f:
        data = pickle.load(f)
    del data["model"]["res5.2.conv3.weight"]
    with open(tmp_path / "cut.pkl", "wb") as f:
        pickle.dump(data, f)
    with pytest.raises(DetectionSetupError, match=r"cut\.pkl: incomplete converted backbone.*res5\.2\.conv3\.weight"):
        check_detection_weights(str(tmp_path / "cut.pkl"))
    with open(tmp_path / "other.pkl", "wb") as f:
        pickle.dump({"weights": [1, 2]}, f)
    with pytest.raises(DetectionSetupError, match="neither a Detectron2 pickle nor a converted ResNet-50"):
        check_detection_weights(str(tmp_path / "other.pkl"))
    with pytest.raises(DetectionSetupError, match="file not found"):
        check_detection_weights(str(tmp_path / "missing.pkl"))


# --- the weights' input layout against the config ---------------------------------------------


def _msra_r50_names() -> list:
    """The blob names of the Caffe2/MSRA ResNet-50 (Detectron2's ImageNetPretrained/MSRA/R-50.pkl)."""
    names = ["conv1_w", "res_conv1_bn_s", "res_conv1_bn_b"]
    for stage, blocks in zip(range(2, 6), (3, 4, 6, 3)):
        for i in range(blocks):
            for branch in (["branch1"] if i == 0 else []) + ["branch2a", "branch2b", "branch2c"]:
                names += [f"res{stage}_{i}_{branch}_{t}" for t in ("w", "bn_s", "bn_b")]
    return names + ["fc1000_w", "fc1000_b"]


def _pickle(path, payload) -> str:
    with open(path, "wb") as f:
        pickle.dump(payload, f)
    return str(path)


def test_synthetic_msra_names_are_what_detectron2_maps_to_our_backbone() -> None:
    from detectron2.checkpoint.c2_model_loading import convert_basic_c2_names

    ours = {rename_key(k) for k in expected_resnet50_shapes() if not k.endswith(("running_mean", "running_var"))}
    assert set(convert_basic_c2_names(_msra_r50_names())) == ours | {"fc1000.weight", "fc1000.bias"}


def test_caffe2_msra_pickles_are_refused_for_rgb_configs(tmp_path) -> None:
    tiny = np.zeros((2, 2), dtype=np.float32)  # the layout is in the names; the shapes do not matter
    flat = {n: tiny for n in _msra_r50_names()}
    flat.update({"conv1_w_momentum": tiny, "res2_0_branch2a_w_momentum": tiny})  # as in the MSRA file
    files = {
        "imagenet": _pickle(tmp_path / "R-50.pkl", flat),  # ImageNet models: a flat dict
        "detection": _pickle(tmp_path / "det.pkl", {"blobs": flat, "cfg": "..."}),  # Detectron models
        "few": _pickle(tmp_path / "few.pkl", {"conv1_w": tiny, "fc1000_w": tiny, "pred_b": tiny}),
    }
    for path in files.values():
        assert check_detection_weights(path) == "a Caffe2/MSRA pickle"  # no config: nothing to compare
        with pytest.raises(DetectionSetupError) as err:
            check_detection_weights(path, "RGB", False)
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"MODEL.WEIGHTS {path}: a Caffe2/MSRA pickle")
        assert "INPUT.FORMAT RGB" in message and "salfmix.cli.convert_to_detectron2" in message
        assert check_detection_weights(path, "BGR", True) == "a Caffe2/MSRA pickle"  # Detectron2's own setting
    with pytest.raises(DetectionSetupError, match="Caffe2/MSRA layout"):
        check_detection_weights("detectron2://ImageNetPretrained/MSRA/R-50.pkl", "RGB", False)
    assert "not opened" in check_detection_weights("detectron2://ImageNetPretrained/torchvision/R-50.pkl", "RGB", False)
    assert "not checked" in check_detection_weights("https://example.org/weights.pkl", "RGB", False)


def test_torchvision_layout_pickles_need_the_torchvision_config(converted_r50, tmp_path, caplog) -> None:
    assert check_detection_weights(converted_r50, "RGB", False) == "a converted torchvision ResNet-50"
    for fmt, stride in (("BGR", True), ("RGB", True)):
        with pytest.raises(DetectionSetupError, match=r"torchvision layout.*STRIDE_IN_1X1 False"):
            check_detection_weights(converted_r50, fmt, stride)
    d2_names = {"stem.conv1.weight": np.zeros(1), "res2.0.conv1.weight": np.zeros(1)}
    moco = _pickle(tmp_path / "moco.pkl", {"model": d2_names, "__author__": "MOCO", "matching_heuristics": True})
    assert "torchvision layout" in check_detection_weights(moco, "RGB", False)
    with pytest.raises(DetectionSetupError, match="torchvision layout"):
        check_detection_weights(moco, "BGR", True)
    # a Detectron2 pickle that does not say how it was trained: accepted, with a warning
    other = _pickle(tmp_path / "zoo.pkl", {"model": d2_names, "__author__": "Detectron2 Model Zoo"})
    with caplog.at_level("WARNING", logger="detection.convert"):
        assert check_detection_weights(other, "RGB", False) == "a Detectron2 pickle (Detectron2 Model Zoo)"
    assert "does not say which input it was trained on" in caplog.text
