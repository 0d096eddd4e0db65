"""Smoke test of the loader benchmark (the real numbers come from ``python -m salfmix.bench.pretrain``)."""

import pytest

from pretrain.data.demo import write_demo_data
from salfmix.bench.loader import loader_throughput


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    """Generated TinyImageNet-layout data: 4 classes x 10 training images."""
    return write_demo_data(str(tmp_path_factory.mktemp("data")), ["tinyimagenet"], 4, 10, 2, 1, 1, 0)["tinyimagenet"]


def test_loader_throughput_runs_both_pipelines(tiny, tmp_path):
    r = loader_throughput(
        tiny, 8, num_batches=2, output_size=32, num_workers=0, warmup=1, cache_dir=str(tmp_path), tune_malloc=False
    )
    assert r["ours_images_per_s"] > 0 and r["imagefolder_images_per_s"] > 0
    assert r["loader_speedup_vs_imagefolder"] == pytest.approx(r["ours_images_per_s"] / r["imagefolder_images_per_s"])
    assert (r["batch_size"], r["output_size"], r["train_images"]) == (8, 32, 40)
    assert all(isinstance(float(v), float) for v in r.values())  # salfmix.bench.pretrain float()s them


def test_needs_a_full_batch(tiny, tmp_path):
    with pytest.raises(ValueError, match="fewer than batch_size=128"):
        loader_throughput(tiny, batch_size=128, cache_dir=str(tmp_path))
