"""tools/bench_pretrain.py with tiny settings: it runs and prints parseable BENCH lines."""

import math
import re

import pytest

from pretrain.data.demo import write_demo_data

EXPECTED = {
    "baseline_step_ms",
    "hybridmix_v3_step_ratio_fresh",
    "hybridmix_v3_step_ratio_cached",
    "ours_images_per_s",
    "imagefolder_images_per_s",
    "loader_speedup_vs_imagefolder",
}


@pytest.mark.slow
def test_bench_pretrain_prints_bench_lines(load_tool, tmp_path, capsys):
    data = str(tmp_path / "data")
    write_demo_data(data, datasets=("tinyimagenet",), classes=4, train_per_class=4, val_per_class=1)
    tool = load_tool("bench_pretrain")
    args = tool.get_parser().parse_args(
        [
            "--data",
            data,
            "--arch",
            "preactresnet18",
            "--batch",
            "8",
            "--size",
            "32",
            "--steps",
            "1",
            "--loader-batch",
            "8",
            "--loader-batches",
            "1",
            "--loader-workers",
            "0",
            "--loader-repeats",
            "1",
        ]
    )
    results = tool.main(args)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("BENCH ")]
    parsed = {}
    for line in lines:
        found = re.fullmatch(r"BENCH (\w+) (\S+)", line)
        assert found, line
        parsed[found.group(1)] = float(found.group(2))
    assert set(parsed) == EXPECTED == set(results)
    assert all(math.isfinite(v) and v > 0 for v in parsed.values())
    assert parsed["loader_speedup_vs_imagefolder"] == pytest.approx(
        parsed["ours_images_per_s"] / parsed["imagefolder_images_per_s"], rel=2e-3
    )


def test_bench_pretrain_needs_a_full_batch(load_tool, tmp_path):
    data = str(tmp_path / "data")
    write_demo_data(data, datasets=("tinyimagenet",), classes=2, train_per_class=2, val_per_class=1)
    tool = load_tool("bench_pretrain")
    args = tool.get_parser().parse_args(["--data", data, "--arch", "preactresnet18", "--batch", "8", "--size", "32"])
    with pytest.raises(SystemExit, match="has 4 training images, fewer than --batch 8"):
        tool.main(args)
