"""tools/visualize_mixing.py and tools/bench_mixing.py through get_parser() and main()."""

import os

import pytest
import torch
import torchvision
from PIL import Image


def test_visualize_generated_images(load_tool, tmp_path, capsys):
    tool = load_tool("visualize_mixing")
    args = tool.get_parser().parse_args(["--num-generated", "2", "--size", "32", "--n", "4", "--out", str(tmp_path)])
    paths = tool.main(args)
    assert len(paths) == 2 and all(os.path.getsize(p) > 1000 for p in paths)
    with Image.open(paths[0]) as im:
        assert im.size[0] > 3 * im.size[1]  # one row of seven panels
    assert "generated demo images" in capsys.readouterr().out


def test_visualize_image_files_with_checkpoint(load_tool, tmp_path):
    files = []
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (50, 40), colour).save(path)
        files.append(str(path))
    ckpt = tmp_path / "model_final.pth"
    torch.save(
        {"model": {f"module.{k}": v for k, v in torchvision.models.resnet50(num_classes=7).state_dict().items()}}, ckpt
    )
    tool = load_tool("visualize_mixing")
    out = tmp_path / "out"
    args = tool.get_parser().parse_args(
        ["--images", *files, "--checkpoint", str(ckpt), "--size", "32", "--n", "4", "--out", str(out)]
    )
    paths = tool.main(args)
    assert [os.path.basename(p) for p in paths] == ["img0.png", "img1.png"]


def test_visualize_bad_image_names_the_file(load_tool, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    tool = load_tool("visualize_mixing")
    args = tool.get_parser().parse_args(["--images", str(bad), str(bad), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="broken.jpg: not a readable image"):
        tool.main(args)


@pytest.mark.slow
def test_bench_prints_every_measure(load_tool, capsys):
    tool = load_tool("bench_mixing")
    results = tool.main(tool.get_parser().parse_args(["--batch", "4", "--size", "32", "--n", "4", "--repeats", "1"]))
    out = capsys.readouterr().out
    for key in ("salfmix_speedup_vs_loop", "r50_step_ms", "saliency_rel_r50_step", "hybridmix_v3_rel_r50_step"):
        assert f"BENCH {key} " in out and results[key] > 0
