"""The demo's pretraining recipe learns: with MIX.SALIENCY cached, 4 epochs of
configs/pretrain/Base-Demo-R50.yaml with MIX.METHOD salfmix on the demo data serve saliency that agrees with a fresh
pass clearly above chance (pretrain/README.md, "Saliency sources"). A model that learns nothing
has saliency that does not depend on the image, and the agreement stays at chance."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_cached_saliency_agrees_with_fresh_after_four_demo_epochs(load_tool, tmp_path: Path) -> None:
    data = load_tool("make_demo_data")
    made = data.main(data.get_parser().parse_args(["--out", str(tmp_path / "data"), "--datasets", "tinyimagenet"]))
    tool = load_tool("pretrain_net")
    out = tmp_path / "salfmix_cached"
    tool.main(
        tool.get_parser().parse_args(
            [
                "--config-file",
                "pretrain/Base-Demo-R50.yaml",
                "MIX.METHOD",
                "salfmix",
                "DATA.ROOT",
                made["tinyimagenet"],
                "OUTPUT_DIR",
                str(out),
                "MIX.SALIENCY",
                "cached",
                "SOLVER.MAX_EPOCHS",
                "4",
                "DATA.CACHE_DIR",
                str(tmp_path / "cache"),
            ]
        )
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    for r in records:  # the numbers per epoch, shown with pytest -s
        print(
            f"epoch {r['epoch']}: loss {r['train_loss']:.3f}, top-1 err {r['top1_err']:.1f}%, agreement "
            f"{r.get('saliency_cache_agreement', float('nan')):.3f} vs chance "
            f"{r.get('saliency_cache_agreement_chance', float('nan')):.3f}"
        )
    last = records[-1]
    agreement, chance, probe = (
        last[k] for k in ("saliency_cache_agreement", "saliency_cache_agreement_chance", "saliency_cache_probe")
    )
    assert agreement >= 0.1
    # Above chance by more than the probe's own noise: the hits are a binomial count over the
    # probe (the chance level pairs every sample with up to 31 others: its noise is far smaller).
    # 3 standard errors; a ratio bar (2x chance) is what the numbers look like, not a test: with
    # ~256 probe samples it moves by +-0.2 between seeds and thread counts (pretrain/README.md).
    z = (agreement - chance) / math.sqrt(agreement * (1 - agreement) / probe)
    assert z >= 3, f"agreement {agreement:.3f} vs chance {chance:.3f} on {probe} samples: z = {z:.1f}"
