"""Write the UCI handwritten digits (real data, from scikit-learn) as a CIFAR-10 python-version folder.

The 1797 greyscale 8x8 digits are upsampled to 32x32 (PIL bilinear), copied into 3 channels and
split 50% / 50% per class with a fixed seed; ``--train-per-class K`` keeps K training images per
class (the test half stays whole). See ``pretrain/data/digits.py``. Needs scikit-learn
(``pip install 'salfmix[study]'``).

Example::

    python -m salfmix.cli.make_digits_dataset --out output/digits --train-per-class 20
    python -m salfmix.cli.pretrain --config-file pretrain/Base-CIFAR10-PreAct18.yaml MIX.METHOD salfmix \\
        DATA.ROOT output/digits/cifar-10-batches-py OUTPUT_DIR output/digits_salfmix
"""

from __future__ import annotations

import argparse

from pretrain.data.digits import write_digits


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (the data goes in OUT/cifar-10-batches-py)")
    p.add_argument(
        "--train-per-class",
        type=int,
        default=None,
        metavar="K",
        help="keep K training images per class (default: the whole training half)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the stratified split and the subset")
    return p


def main(args: argparse.Namespace | None = None) -> dict[str, object]:
    """Write the dataset; print and return its summary. Exits with a one-line message on bad input."""
    args = args if args is not None else get_parser().parse_args()
    try:
        summary = write_digits(args.out, args.seed, args.train_per_class)
    except (ImportError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    print(f"UCI handwritten digits (real data, 8x8 upsampled to 32x32) in the CIFAR-10 layout: {summary['folder']}")
    print(f"  train {summary['train']} {summary['train_counts']}")
    print(f"  test  {summary['test']} {summary['test_counts']}")
    return summary


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    main(get_parser().parse_args(argv))


if __name__ == "__main__":
    run()
