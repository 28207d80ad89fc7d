"""The repository stands on its own: no file points outside it, and the package metadata declares what
the code imports."""
import ast
import configparser
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: References to places outside the checkout.
OUTSIDE_PATTERNS = {
    "a sibling folder of the checkout": re.compile(r"\.\./shared\b|[\"']shared[\"']\s*/"),
    "an absolute path of a development machine": re.compile(r"(?<![\w.~-])/(?:work|home|Users|root)/\w"),
    "the development setup's method notes (docs/method.md is ours)": re.compile(r"SCIENCE\.md"),
}

#: Files that may refer outside the checkout, with the reason. Each entry must still need its exception
#: (checked below), so the list cannot outlive its reasons.
ALLOWED = {
    "tests/golden_compact.py": "makes the in-repository golden copy from its source beside the checkout "
                               "(../shared/golden)",
    "tests/test_golden_copy.py": "compares the in-repository golden copy with its source (../shared/golden) "
                                 "when present, and skips only that comparison otherwise",
    "tests/data/golden/README.md": "says where the in-repository golden copy comes from",
    "tests/test_repository.py": "its own examples of what the check catches",
}


def repository_files() -> list[str]:
    """Tracked files plus untracked ones that git does not ignore, relative to the root."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the repository's file list is unknown")
    return [name for name in listing.decode().split("\0") if name and (ROOT / name).is_file()]


def outside_references(path: pathlib.Path) -> list[str]:
    """``"line N: <kind>"`` for every reference to a place outside the checkout in a text file."""
    data = path.read_bytes()
    if b"\0" in data:
        return []  # binary (images, PDFs)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return []
    return [
        f"line {number}: {kind}"
        for number, line in enumerate(text.splitlines(), 1)
        for kind, pattern in OUTSIDE_PATTERNS.items()
        if pattern.search(line)
    ]


def test_no_file_refers_outside_the_repository():
    found = {
        name: hits
        for name in repository_files()
        if name not in ALLOWED and (hits := outside_references(ROOT / name))
    }
    assert not found, f"files referring to paths outside the repository: {found}"


def test_allowed_exceptions_are_still_needed():
    names = set(repository_files())
    stale = [name for name in ALLOWED if name not in names or not outside_references(ROOT / name)]
    assert not stale, f"remove these entries from ALLOWED, they no longer refer outside: {stale}"


@pytest.mark.parametrize(
    "line, expected",
    [
        ('GOLDEN = ROOT.parent / "shared" / "golden"', True),
        ("see ../shared/golden/README.md", True),
        ("python /work/main/x.py", True),
        ("cd /home/alice/data", True),
        ("docs/SCIENCE.md §2", True),
        ("see docs/method.md §2.4 and ../README.md", False),
        ("mftma/work/x.py, ~/work/runs", False),
    ],
)
def test_outside_patterns(tmp_path, line, expected):
    path = tmp_path / "file.txt"
    path.write_text(line + "\n")
    assert bool(outside_references(path)) is expected


# --- package metadata ---------------------------------------------------------------------------------

#: Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"sklearn": "scikit-learn", "skimage": "scikit-image", "yaml": "PyYAML"}

#: Third-party modules that mftma imports only optionally (guarded, with a fallback), so they are not
#: install requirements (numba.cuda is part of numba, fcntl is in the standard library).
OPTIONAL_IMPORTS: dict[str, str] = {
    "umap": "umap-learn: the embedding figure's optional UMAP projection (mftma.plotting.embedding; PCA otherwise)",
}


def normalized(distribution: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def imported_distributions(package: pathlib.Path) -> dict[str, set[str]]:
    """Distribution -> modules of ``package`` that import it (third-party absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top == package.name or top in OPTIONAL_IMPORTS:
                    continue
                found.setdefault(normalized(DISTRIBUTIONS.get(top, top)), set()).add(
                    str(path.relative_to(package.parent))
                )
    return found


def install_requires() -> dict[str, str]:
    """Normalised distribution name -> requirement line of setup.cfg's ``install_requires``."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = [line.strip() for line in config["options"]["install_requires"].splitlines() if line.strip()]
    return {normalized(re.match(r"[A-Za-z0-9._-]+", line).group()): line for line in lines}


def test_install_requires_declares_exactly_the_imported_distributions():
    imported, required = imported_distributions(ROOT / "mftma"), install_requires()
    missing = {name: sorted(modules) for name, modules in imported.items() if name not in required}
    unused = sorted(line for name, line in required.items() if name not in imported)
    assert not missing, f"imported by mftma but not in install_requires: {missing}"
    assert not unused, f"in install_requires but imported nowhere in mftma: {unused}"


def test_install_requires_have_lower_bounds_and_no_upper_bounds():
    for line in install_requires().values():
        assert ">=" in line, f"{line!r}: give a lower bound"
        assert not re.search(r"<|==|~=", line), f"{line!r}: no caps or pins in the package metadata"


def test_imported_distributions_finds_imports(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text(
        "import os\nimport numpy as np\nfrom sklearn.linear_model import Ridge\nfrom . import b\n"
        "from pkg import c\n\ndef f():\n    import yaml\n"
    )
    assert imported_distributions(package) == {
        "numpy": {"pkg/a.py"}, "scikit-learn": {"pkg/a.py"}, "pyyaml": {"pkg/a.py"}
    }
