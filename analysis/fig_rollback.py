"""k x e heatmaps of the accuracy change after layer rollback (run `mftma rollback RUN_DIR` first)."""
from __future__ import annotations

import _script


def run() -> None:
    args = _script.parser(__doc__).parse_args()
    from mftma.results.rollback import load_rollback
    from mftma.plotting import rollback_heatmaps

    _script.save(rollback_heatmaps(load_rollback(args.run_dir)), args, "rollback")


if __name__ == "__main__":
    _script.main(run)
