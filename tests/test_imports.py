"""Imports go one way (ARCHITECTURE.md): checked by parsing every file's imports with `ast`, so no
import is executed and a lazy import inside a function counts as much as one at the top."""
import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PROJECT = ("analysis", "bench", "experiments", "models", "plumbing", "scaling")
FORBIDDEN = {
    "analysis": {"scaling", "models", "experiments"},  # runs on anyone's CSV
    "models": {"scaling", "experiments", "analysis"},  # knows nothing of training or studies
    "plumbing": set(PROJECT) - {"plumbing"},  # shared by all, so it imports none
    "scaling": {"experiments", "analysis", "bench"},  # trains one run: knows nothing of studies
}


def imported_packages(path: pathlib.Path) -> set[tuple[str, int]]:
    """(top-level package, line) of every absolute import in a file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add((node.module.split(".")[0], node.lineno))
    return out


def violations(package: str) -> list[str]:
    return [f"{path.relative_to(REPO)}:{line} imports {name}"
            for path in sorted((REPO / package).rglob("*.py"))
            for name, line in sorted(imported_packages(path)) if name in FORBIDDEN[package]]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_it_may(package):
    assert (REPO / package / "__init__.py").is_file()
    assert violations(package) == []


def test_the_check_sees_lazy_and_from_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\nfrom scaling.io import x\ndef g():\n    import models.config as c\nfrom . import y\n")
    assert {n for n, _ in imported_packages(f)} == {"os", "scaling", "models"}


def test_the_flops_library_never_imports_its_command():
    # `python -m scaling.flops` runs scaling/flops/__main__.py, which imports the CLI; the CLI imports the library.
    lib = REPO / "scaling" / "flops" / "__init__.py"
    tree = ast.parse(lib.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
              for a in n.names}
    assert not [n for n in names if "cli" in n.split(".")], names
