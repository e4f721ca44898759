"""Import boundaries of the library, read from the map in chicago_taxi/__init__.py (STAGES,
FORBIDDEN_IMPORTS): a package imports only packages at or above it in STAGES, only
`orchestration` imports Airflow, and no package imports an HTTP framework. Every import counts,
including those inside functions. DAG files import Airflow through `airflow.sdk` only."""

from __future__ import annotations

import ast
from pathlib import Path

import chicago_taxi
from chicago_taxi import FORBIDDEN_IMPORTS, STAGES

PLUGINS = Path(chicago_taxi.__file__).resolve().parents[1]
DAGS = PLUGINS.parent / "dags"


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in `source`; `from a import b` yields a.b as well
    as a, so `from chicago_taxi import training` names the package it pulls in."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def boundary_violations(package_root: Path) -> list[str]:
    """Every import under `package_root` (a chicago_taxi package dir) that breaks the map."""
    problems = []
    for path in sorted(package_root.rglob("*.py")):
        parts = path.relative_to(package_root).parts
        if len(parts) == 1:
            if path.name == "__init__.py" and imported_modules(path.read_text()):
                problems.append(f"{path.name}: the package root must import nothing")
            elif path.name != "__init__.py":
                problems.append(f"{path.name}: every module belongs to a stage package, not the package root")
            continue
        stage = parts[0]
        if stage not in STAGES:
            problems.append(f"{'/'.join(parts)}: package {stage!r} is not in chicago_taxi.STAGES")
            continue
        for line, module in imported_modules(path.read_text()):
            names = module.split(".")
            where = f"{'/'.join(parts)}:{line}"
            if names[0] in FORBIDDEN_IMPORTS[stage]:
                problems.append(f"{where}: {stage} must not import {names[0]} ({module})")
            if names[0] == "chicago_taxi" and len(names) > 1 and names[1] in STAGES:
                if STAGES.index(names[1]) > STAGES.index(stage):
                    problems.append(f"{where}: {stage} imports {module}, a later stage ({' < '.join(STAGES)})")
    return problems


def test_no_package_imports_a_later_stage_airflow_or_an_http_framework():
    problems = boundary_violations(PLUGINS / "chicago_taxi")
    assert not problems, "\n".join(problems)


def test_the_check_finds_a_planted_violation_of_each_kind(tmp_path):
    root = tmp_path / "chicago_taxi"
    for package, source in {
        "core": "from chicago_taxi.training import steps\n",  # a lower stage importing a higher one
        "features": "def f():\n    import airflow.sdk\n",  # Airflow outside orchestration, inside a function
        "serving": "from fastapi import FastAPI\n",  # an HTTP framework in the library
        "orchestration": "import airflow\nfrom chicago_taxi.streaming import batch\n",  # allowed
    }.items():
        (root / package).mkdir(parents=True)
        (root / package / "planted.py").write_text(source)
    (root / "__init__.py").write_text("")
    (root / "loose.py").write_text("")
    problems = boundary_violations(root)
    assert any(p.startswith("core/planted.py:1: core imports chicago_taxi.training") for p in problems), problems
    assert any(p.startswith("features/planted.py:2: features must not import airflow") for p in problems), problems
    assert any(p.startswith("serving/planted.py:1: serving must not import fastapi") for p in problems), problems
    assert any(p.startswith("loose.py") for p in problems), problems
    assert not [p for p in problems if p.startswith("orchestration/")], problems


def test_every_stage_package_exists_and_says_what_it_owns():
    for stage in STAGES:
        init = PLUGINS / "chicago_taxi" / stage / "__init__.py"
        assert init.exists(), f"{stage} is in STAGES but has no package"
        assert ast.get_docstring(ast.parse(init.read_text())), f"chicago_taxi.{stage} has no docstring"


def test_dag_files_import_airflow_through_the_task_sdk_only():
    for path in sorted(DAGS.glob("*.py")):
        bad = [m for _, m in imported_modules(path.read_text()) if m.split(".")[0] == "airflow" and not m.startswith("airflow.sdk")]
        assert not bad, f"{path.name} imports {bad}: use airflow.sdk"
