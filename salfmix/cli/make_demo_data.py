"""Write small generated datasets in the exact on-disk layouts of TinyImageNet-200, CIFAR-10 and CIFAR-100.

The images are generated content (coloured shapes), NOT the real datasets; see
``pretrain/data/demo.py`` for the layouts written.

Example::

    python -m salfmix.cli.make_demo_data --out output/demo/data
"""

from __future__ import annotations

import argparse

from pretrain.data.demo import DATASETS, write_demo_data


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (the datasets go in its subfolders)")
    p.add_argument("--classes", type=int, default=10, help="TinyImageNet classes (CIFAR-10 has 10, CIFAR-100 100)")
    p.add_argument("--train-per-class", type=int, default=40, help="training images per class (TinyImageNet, CIFAR-10)")
    p.add_argument("--val-per-class", type=int, default=10, help="val/test images per class (TinyImageNet, CIFAR-10)")
    p.add_argument("--cifar100-train-per-class", type=int, default=4, help="CIFAR-100 training images per class")
    p.add_argument("--cifar100-test-per-class", type=int, default=2, help="CIFAR-100 test images per class")
    p.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS), help="which datasets to write")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(args: argparse.Namespace | None = None) -> dict[str, str]:
    """Write the requested datasets under ``args.out``; returns ``{dataset: folder}``."""
    args = args if args is not None else get_parser().parse_args()
    made = write_demo_data(
        args.out,
        args.datasets,
        args.classes,
        args.train_per_class,
        args.val_per_class,
        args.cifar100_train_per_class,
        args.cifar100_test_per_class,
        args.seed,
    )
    print("Generated data (coloured shapes, NOT the real datasets), in the real on-disk layouts:")
    for name, folder in made.items():
        print(f"  {name:13s}{folder}")
    return made


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    main(get_parser().parse_args(argv))


if __name__ == "__main__":
    run()
