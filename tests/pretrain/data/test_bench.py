"""Smoke test of the loader benchmark (the real numbers come from tools/bench_pretrain.py)."""
import pytest

from pretrain.data.bench import loader_throughput


def test_loader_throughput_runs_both_pipelines(demo_root, tmp_path):
    r = loader_throughput(
        demo_root, 8, num_batches=2, output_size=32, num_workers=0, warmup=1, cache_dir=str(tmp_path), tune_malloc=False
    )
    assert r["ours_images_per_s"] > 0 and r["imagefolder_images_per_s"] > 0
    assert r["loader_speedup_vs_imagefolder"] == pytest.approx(r["ours_images_per_s"] / r["imagefolder_images_per_s"])
    assert (r["batch_size"], r["output_size"], r["train_images"]) == (8, 32, 40)
    assert all(isinstance(float(v), float) for v in r.values())  # tools/bench_pretrain.py float()s them


def test_needs_a_full_batch(demo_root, tmp_path):
    with pytest.raises(ValueError, match="fewer than batch_size=128"):
        loader_throughput(demo_root, batch_size=128, cache_dir=str(tmp_path))
