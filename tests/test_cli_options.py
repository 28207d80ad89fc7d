"""The command line's one vocabulary: every subcommand's shared options match mftma/cli/options.py."""
from __future__ import annotations

import argparse
import io
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from mftma import __version__
from mftma.cli import COMMAND_MODULES, build_parser
from mftma.cli.options import SHARED_OPTIONS, DeprecatedAlias, add_option
from mftma.progress import progress_bar

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SHARED_DESTS = {option.dest for option in SHARED_OPTIONS.values()}


def _subcommand_parsers(parser: argparse.ArgumentParser, prefix=()):
    """Yield (command words, parser) for every leaf subcommand, nested ones (``flawed concepts``) included."""
    children = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not children:
        yield prefix, parser
    for action in children:
        for name, child in action.choices.items():
            yield from _subcommand_parsers(child, (*prefix, name))


SUBCOMMANDS = dict(_subcommand_parsers(build_parser()))


def test_walk_finds_every_subcommand():
    assert {words[0] for words in SUBCOMMANDS} == set(COMMAND_MODULES)
    assert ("flawed", "randomize") in SUBCOMMANDS


@pytest.mark.parametrize("words", list(SUBCOMMANDS), ids=" ".join)
def test_shared_options_follow_the_table(words):
    for action in SUBCOMMANDS[words]._actions:
        if isinstance(action, DeprecatedAlias):
            continue
        shared = [flag for flag in action.option_strings if flag in SHARED_OPTIONS]
        if not shared:
            # Any other option must not take over the dest (hence the meaning) of a shared one.
            assert action.dest not in SHARED_DESTS, f"{words}: {action.option_strings} reuses dest {action.dest!r}"
            continue
        assert action.option_strings == shared, f"{words}: one spelling per option"
        reference = add_option(argparse.ArgumentParser(), shared[0])
        assert _settings(action) == _settings(reference), f"{words} {shared[0]}"
        assert not action.required or shared[0] == "--out", f"{words}: only --out may be required"


def _settings(action: argparse.Action) -> tuple:
    return type(action), action.dest, action.default, action.nargs, action.type, action.const, action.choices


@pytest.mark.parametrize("words, old, new, value, dest, expected", [
    (("simcap", "run"), "--json", "--out", ["x.json"], "out", "x.json"),
    (("diagnose", "run"), "--output", "--out", ["d.csv"], "out", "d.csv"),
    (("diagnose", "run"), "--samples", "--M-values", ["5", "10"], "M_values", [5, 10]),
    (("diagnose", "run"), "--projections", "--N-values", ["8"], "N_values", [8]),
    (("diagnose", "run"), "--seeds", "--n-seeds", ["3"], "n_seeds", 3),
    (("train", "tiny", "--out", "r"), "--epochs", "--n-epochs", ["4"], "n_epochs", 4),
])
def test_deprecated_spellings_still_work_and_name_the_new_one(capsys, words, old, new, value, dest, expected):
    args = build_parser().parse_args([*words, old, *value])
    assert getattr(args, dest) == expected
    error = capsys.readouterr().err
    assert f"{old} is deprecated" in error and f"use {new}" in error
    assert getattr(build_parser().parse_args([*words, new, *value]), dest) == expected
    assert capsys.readouterr().err == ""


def _run(*arguments):
    return subprocess.run([sys.executable, *arguments], capture_output=True, text=True, timeout=120)


def test_version_bare_command_and_python_m():
    version = _run("-m", "mftma", "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"mftma {__version__}"
    bare = _run("-m", "mftma")
    assert bare.returncode == 2 and "usage: mftma" in bare.stderr and "quickstart" in bare.stderr
    console = _run("-c", "import sys; from mftma.cli import main; sys.argv = ['mftma']; sys.exit(main())")
    assert console.returncode == 2
    helped = _run("-m", "mftma", "demo", "--help")
    assert helped.returncode == 0 and "--kappa" in helped.stdout


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stream, enabled, drawn", [
    (_Terminal, True, True), (_Terminal, False, False), (io.StringIO, True, False),
])
def test_progress_bars_only_on_a_terminal(stream, enabled, drawn):
    output = stream()
    assert list(progress_bar(range(3), enabled=enabled, file=output, desc="work")) == [0, 1, 2]
    assert ("work" in output.getvalue()) == drawn


def _readme_commands():
    """Every ``mftma ...`` line of the README's bash blocks, without comments."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    for line in (line for block in blocks for line in block.splitlines()):
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            if words[:1] == ["mftma"]:
                yield words[1:]


README_COMMANDS = list(_readme_commands())


def test_readme_has_commands():
    assert {words[0] for words in README_COMMANDS} >= {"quickstart", "train", "cache", "analyze", "simcap"}


@pytest.mark.parametrize("words", README_COMMANDS, ids=" ".join)
def test_readme_commands_parse_with_current_spellings(capsys, words):
    build_parser().parse_args(words)  # unknown subcommands or options exit with status 2
    assert "deprecated" not in capsys.readouterr().err
