"""The domain imports only the standard library (and Pimlico's own pure modules)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pimlico.domain

DOMAIN = Path(pimlico.domain.__file__).parent
ALLOWED_OWN = ("pimlico.domain", "pimlico.errors")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_every_domain_module_imports_only_the_standard_library_and_pure_pimlico() -> None:
    offenders = {
        f"{path.name}: {module}"
        for path in DOMAIN.glob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0] not in sys.stdlib_module_names
        and module not in ("__future__", "_typeshed")  # _typeshed: type hints only
        and not module.startswith(ALLOWED_OWN)
    }
    assert offenders == set()


def test_the_errors_module_the_domain_uses_is_pure_too() -> None:
    errors = DOMAIN.parent / "errors.py"
    assert all(
        m.split(".")[0] in sys.stdlib_module_names
        for m in imported_modules(errors) - {"__future__"}
    )
