"""Draw what SalfMix and HybridMix do to images (the paper's Figures 2, 3 and 6).

Examples::

    python -m salfmix.cli.visualize_mixing --out output/mixing                       # generated images
    python -m salfmix.cli.visualize_mixing --images a.jpg b.jpg --checkpoint output/r50/model_final.pth
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from pretrain.data.synthetic import synthetic_images
from pretrain.models import load_resnet50
from pretrain.visualize import mixing_panels, normalize, save_figures


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", nargs="*", default=None, help="image files (default: generated demo images)")
    p.add_argument("--num-generated", type=int, default=6, help="how many generated images when --images is not given")
    p.add_argument(
        "--checkpoint", default=None, help="a ResNet-50 checkpoint (ours, torchvision or DDP); default: untrained"
    )
    p.add_argument("--size", type=int, default=64, help="images are resized to size x size")
    p.add_argument("--n", type=int, default=8, help="pooled saliency grid (8 at 64 px, 4 at 32 px)")
    p.add_argument("--r", type=float, default=0.3, help="patch side ratio")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="output/mixing", help="output folder for the PNG grids")
    return p


def load_images(paths: list[str], size: int) -> np.ndarray:
    """Read and resize image files to uint8 [N, size, size, 3]; a clear error names a bad file."""
    from PIL import Image

    out = []
    for path in paths:
        try:
            with Image.open(path) as im:
                out.append(np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR)))
        except (OSError, ValueError) as err:
            raise SystemExit(f"{path}: not a readable image ({err})") from None
    return np.stack(out)


def main(args: argparse.Namespace) -> list[str]:
    """Write the figures; returns their paths."""
    torch.manual_seed(args.seed)
    model = load_resnet50(args.checkpoint)
    if args.images:
        raw = load_images(args.images, args.size)
        names: list[str] | None = [os.path.splitext(os.path.basename(p))[0] for p in args.images]
        images = normalize(raw)
        with torch.no_grad():  # no labels: explain the model's own prediction
            targets = model.eval()(images).argmax(dim=1)
        source = "the given images (labels: the model's predictions)"
    else:
        raw, labels = synthetic_images(args.num_generated, args.size, seed=args.seed)
        images, targets, names = normalize(raw), torch.from_numpy(labels), None
        source = "generated demo images (not a real dataset)"
    if images.shape[0] < 2:
        raise SystemExit("--images: HybridMix needs at least two images")
    panels = mixing_panels(model, images, targets, args.n, args.r, args.seed)
    paths = save_figures(images, targets, panels, args.out, names)
    model_name = args.checkpoint or "an untrained ResNet-50"
    print(f"wrote {len(paths)} figures to {args.out} ({source}; saliency from {model_name})")
    return paths


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    main(get_parser().parse_args(argv))


if __name__ == "__main__":
    run()
