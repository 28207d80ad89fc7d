"""Loss and accuracy per subset across training epochs, with the best epoch marked."""
from __future__ import annotations

import _script


def run() -> None:
    args = _script.parser(__doc__).parse_args()
    from mftma.experiments.run import Run
    from mftma.plotting import training_curves

    run = Run(args.run_dir)
    _script.save(training_curves(run.metrics(), best_epoch=run.best_epoch()), args, "training_curves")


if __name__ == "__main__":
    _script.main(run)
