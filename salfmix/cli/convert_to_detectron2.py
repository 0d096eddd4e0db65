"""Convert a torchvision-layout ResNet-50 checkpoint to a Detectron2 backbone pickle.

Accepts our pretraining checkpoints (``model_final.pth``: a dict whose ``model`` entry is the
state dict; a training checkpoint ``model_epochNNNN.pth`` too, with a note that it converts an
intermediate epoch), plain torchvision state dicts and DDP checkpoints (keys prefixed
``module.``). Refuses anything that is not a complete ResNet-50 backbone (a missing stage, a
CIFAR 3x3 stem, wrong shapes) and weights with NaN or infinite values, leaving no output file.
The classifier (``fc``) is dropped. The output is written atomically; an existing OUT is
replaced only with ``--force``.

Example::

    python -m salfmix.cli.convert_to_detectron2 output/pretrain/r50_cutmix/model_final.pth r50_cutmix.pkl
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from detection.convert import convert_state_dict, read_checkpoint, write_detectron2_pickle
from salfmix.errors import DetectionSetupError, RunError
from salfmix.runs.files import remove_stale_temps
from salfmix.runs.signals import Interrupted, StopSignals


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="IN", help="torchvision ResNet-50 checkpoint (.pth)")
    p.add_argument("output", metavar="OUT", help="Detectron2 pickle to write (.pkl)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    return p


def main(args: argparse.Namespace) -> str:
    """Convert ``args.input`` to ``args.output``; return the output path."""
    if not args.output.endswith(".pkl"):
        raise DetectionSetupError(f"{args.output}: OUT must end with .pkl (Detectron2 reads pickles by extension)")
    if not os.path.isfile(args.input):
        raise DetectionSetupError(f"{args.input}: checkpoint not found")
    if os.path.exists(args.output) and not args.force:
        raise DetectionSetupError(f"{args.output}: exists; pass --force to replace it")
    # A stop signal waits for the (atomic) write to end: OUT is then complete, or not there at all.
    with StopSignals() as stop:
        remove_stale_temps(os.path.dirname(args.output) or ".", dead_writers_only=True)  # of a killed conversion
        state, note = read_checkpoint(args.input)
        try:
            model = convert_state_dict(state)
        except DetectionSetupError as err:
            raise DetectionSetupError(f"{args.input}: {err}") from None
        if note:
            print(f"note: {note}")
        write_detectron2_pickle(model, args.output)
    if stop.signum is not None:
        raise Interrupted(stop.signum, f"after writing {args.output} (complete)")
    n_params = sum(int(np.prod(v.shape)) for v in model.values())
    has_fc = any(k.startswith(("fc.", "module.fc.")) for k in state)
    print(
        f"wrote {args.output}: {len(model)} tensors ({n_params / 1e6:.1f} M values) of a torchvision ResNet-50 "
        f"in Detectron2 names (stem, res2..res5){'; dropped the classifier' if has_fc else ''}"
    )
    return args.output


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    try:
        main(get_parser().parse_args(argv))
    except (DetectionSetupError, RunError) as err:
        sys.exit(f"error: {err}")
    except Interrupted as err:
        print(str(err), file=sys.stderr)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    run()
