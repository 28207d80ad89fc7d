"""The options several subcommands share, defined once: same name, same meaning, same default.

:data:`SHARED_OPTIONS` is the one table; a subcommand adds an option with :func:`add_option` (it may
give its own help text and make ``--out`` required, nothing else), and an old spelling with
:func:`add_deprecated_alias`, which still works for one release but prints a warning naming the new
spelling. ``tests/test_cli_options.py`` walks every subcommand's parser and checks each shared option
against this table.

Vocabulary:

* ``--out``: where a command writes (a file or a folder, said by each command's help);
* plural selectors (``--epochs``, ``--layers``, ``--subsets``) take lists; the singular ones
  (``--epoch``, ``--layer``, ``--subset``) pick one cache entry;
* ``--M``, ``--P``, ``--N``: examples per class manifold, number of manifolds, number of features;
  sweeps over them are ``--M-values``, ``--N-values`` (like ``--n-t-values``);
* ``--kappa``, ``--n-t``, ``--n-reps``, ``--seed``: the estimator's settings and the one seed of a
  command's random draws; ``--n-seeds``: how many seeds a command repeats over;
* ``--no-progress``: hide progress bars and progress messages (bars are hidden anyway when stderr is
  not a terminal, see :func:`mftma.progress.progress_bar`).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

#: Estimator defaults of the command line (docs/method.md §2).
DEFAULT_KAPPA, DEFAULT_N_T, DEFAULT_N_REPS, DEFAULT_SEED = 0.0, 200, 10, 0


@dataclasses.dataclass(frozen=True)
class SharedOption:
    """One shared option: its flag and the argparse settings every subcommand must use."""

    flag: str
    help: str
    dest: str
    type: type | None = None
    nargs: str | None = None
    default: object = None
    metavar: str | None = None
    action: str = "store"

    def argparse_kwargs(self) -> dict:
        kwargs = {"dest": self.dest, "default": self.default, "action": self.action}
        if self.action == "store":
            kwargs.update(type=self.type, nargs=self.nargs, metavar=self.metavar)
        return kwargs


def _option(flag, help, dest=None, **settings) -> SharedOption:
    return SharedOption(flag, help, dest or flag.lstrip("-").replace("-", "_"), **settings)


#: The shared options, by flag.
SHARED_OPTIONS = {option.flag: option for option in (
    _option("--out", "output path", metavar="PATH"),
    _option("--epochs", "epochs", type=int, nargs="+", metavar="EPOCH"),
    _option("--layers", "layer names", nargs="+", metavar="LAYER"),
    _option("--subsets", "subsets among unpermuted, permuted, restored, shuffled, test", nargs="+",
            metavar="SUBSET"),
    _option("--epoch", "cached epoch", type=int, metavar="EPOCH"),
    _option("--layer", "cached layer", metavar="LAYER"),
    _option("--subset", "cached subset: unpermuted, permuted, restored, shuffled or test", metavar="SUBSET"),
    _option("--M", "examples per class manifold", type=int),
    _option("--P", "number of class manifolds", type=int),
    _option("--N", "number of features", type=int),
    _option("--M-values", "examples per manifold to compare", dest="M_values", type=int, nargs="+",
            metavar="M"),
    _option("--N-values", "feature counts to compare", dest="N_values", type=int, nargs="+", metavar="N"),
    _option("--n-t-values", "numbers of t vectors to compare (default: 50 100 200 400)", type=int, nargs="+",
            default=(50, 100, 200, 400), metavar="N"),
    _option("--kappa", f"MFTMA margin kappa >= 0 (default: {DEFAULT_KAPPA:g})", type=float,
            default=DEFAULT_KAPPA),
    _option("--n-t", f"Gaussian t vectors per manifold in the anchor-point average (default: {DEFAULT_N_T})",
            type=int, default=DEFAULT_N_T, metavar="N"),
    _option("--n-reps", f"restarts of the low-rank center-structure search (default: {DEFAULT_N_REPS})",
            type=int, default=DEFAULT_N_REPS, metavar="N"),
    _option("--seed", f"seed of the command's random draws (default: {DEFAULT_SEED})", type=int,
            default=DEFAULT_SEED),
    _option("--n-seeds", "repeats of each setting, with seeds derived from --seed (default: 5)", type=int,
            default=5, metavar="S"),
    _option("--device", "auto (CUDA when present), cpu, cuda or cuda:N", metavar="DEVICE"),
    _option("--scheduler", "address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786 "
            "(default: start a local cluster)", metavar="ADDRESS"),
    _option("--workers", "worker processes of the local Dask cluster (default: one per core)", type=int,
            metavar="N"),
    _option("--no-progress", "hide progress bars and messages", dest="progress", action="store_false",
            default=True),
)}


def add_option(parser: argparse.ArgumentParser, flag: str, help: str | None = None, *,
               required: bool = False, metavar: str | None = None) -> argparse.Action:
    """Add the shared option ``flag`` to ``parser``, with the table's settings.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        A subcommand's parser.
    flag : str
        A key of :data:`SHARED_OPTIONS`.
    help : str, optional
        The subcommand's own wording (default: the table's).
    required : bool
        Only for ``--out`` of commands that must be told where to write.
    metavar : str, optional
        The subcommand's name for the value in its help (e.g. ``DIR`` for a folder).

    Returns
    -------
    argparse.Action
        The option's action (to attach deprecated aliases to).
    """
    option = SHARED_OPTIONS[flag]
    kwargs = option.argparse_kwargs()
    if metavar is not None:
        kwargs["metavar"] = metavar
    return parser.add_argument(option.flag, help=help or option.help, required=required, **kwargs)


def add_options(parser: argparse.ArgumentParser, *flags: str) -> None:
    """Add several shared options with the table's help texts."""
    for flag in flags:
        add_option(parser, flag)


class DeprecatedAlias(argparse.Action):
    """An old spelling: stores like the new option and prints a warning naming it."""

    def __init__(self, option_strings, dest, new_flag: str, **kwargs):
        self.new_flag = new_flag
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: FutureWarning: {option_string} is deprecated and will be removed in the next "
              f"release; use {self.new_flag}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_deprecated_alias(parser: argparse.ArgumentParser, old_flag: str, new_action: argparse.Action) -> None:
    """Accept ``old_flag`` as a hidden, deprecated spelling of the option ``new_action``."""
    parser.add_argument(old_flag, action=DeprecatedAlias, dest=new_action.dest, default=argparse.SUPPRESS,
                        nargs=new_action.nargs, type=new_action.type, metavar=new_action.metavar,
                        help=argparse.SUPPRESS, new_flag=new_action.option_strings[0])
