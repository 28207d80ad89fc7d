"""The top-level public surface: what the README's "Python API" section documents, lazily exported."""
import ast
import pathlib
import re
import subprocess
import sys
import types

import pytest

import mftma

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def documented_imports() -> list[str]:
    """Names imported by ``from mftma import ...`` in the README's Python API code block."""
    section = re.search(r"<!-- section: python-api -->(.*?)<!-- /section: python-api -->", README.read_text(), re.S)
    assert section, "README.md lacks its python-api section"
    block = re.search(r"```python\n(.*?)```", section.group(1), re.S)
    assert block, "the python-api section lacks its code block"
    return [
        alias.name
        for node in ast.parse(block.group(1)).body
        if isinstance(node, ast.ImportFrom) and node.module == "mftma"
        for alias in node.names
    ]


def test_readme_documents_exactly_the_public_names():
    documented = documented_imports()
    assert len(documented) == len(set(documented)), "a name is documented twice"
    assert sorted(documented) == mftma.__all__


#: Public names that are also old import paths (modules of the original package, kept as shims).
SHIM_MODULES = {"alldata_dimension_analysis"}


@pytest.mark.parametrize("name", documented_imports())
def test_documented_name_imports(name):
    value = getattr(mftma, name)
    if isinstance(value, types.ModuleType):  # once `import mftma.alldata_dimension_analysis` ran: its callable shim
        assert name in SHIM_MODULES and callable(value)
    else:
        assert getattr(value, "__name__", None) == name  # the object itself, not an alias
    assert name in dir(mftma)


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        mftma.no_such_name  # noqa: B018


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_import_and_estimator_names_do_not_import_torch():
    code = (
        "import sys, mftma\n"
        "light = 'torch' not in sys.modules\n"
        "mftma.analyze_manifolds, mftma.data_dimension, mftma.InputError\n"
        "print(light, 'torch' in sys.modules)"
    )
    assert run_python(code).split() == ["True", "False"]


def test_pipeline_names_load_on_first_use():
    code = "import sys, mftma\nbefore = 'torch' in sys.modules\nmftma.train\nprint(before, 'torch' in sys.modules)"
    assert run_python(code).split() == ["False", "True"]


def test_deprecated_results_module_warns_and_keeps_its_names():
    code = ("import warnings\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    import mftma.pipeline.results as old\n"
            "import mftma.results.table as new\n"
            "print(old.load_results is new.load_results, any(w.category is DeprecationWarning\n"
            "      and 'mftma.results.table' in str(w.message) for w in caught))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["True", "True"], result.stderr
