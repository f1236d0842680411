"""The import layers of recspark (contracts in pyproject.toml, run by `make lint`) and the
function-length rule: both hold on the code, and both fail on a planted violation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CONF_DIR

ROOT = CONF_DIR.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(
        ROOT / "recspark", project / "recspark", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    return project


def test_the_contracts_hold() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    "module, planted, broken",
    [
        # the ranking layer importing scoring: a layer above it, and Spark with it
        ("ranking/topk.py", "from recspark.scoring import udf", "recspark.ranking is not allowed"),
        # two stage packages that must stay independent
        ("etl/clean.py", "from recspark.features import transforms", "recspark.etl is not allowed"),
        # a cycle inside one package
        ("io/delta.py", "from recspark.io import sources", "No cycles are allowed"),
    ],
)
def test_a_planted_import_breaks_a_contract(
    tmp_path: Path, module: str, planted: str, broken: str
) -> None:
    project = _copy(tmp_path)
    if module == "io/delta.py":  # sources must import delta too, to close the cycle
        target = project / "recspark" / "io" / "sources.py"
        target.write_text(target.read_text() + "\nfrom recspark.io import delta  # noqa\n")
    target = project / "recspark" / module
    target.write_text(target.read_text() + f"\n{planted}  # noqa\n")
    done = _lint_imports(project)
    assert done.returncode != 0
    assert broken in done.stdout, done.stdout


def test_function_length_rule(tmp_path: Path) -> None:
    check = [sys.executable, str(ROOT / "scripts" / "check_function_length.py")]
    assert subprocess.run([*check, str(ROOT / "recspark")], capture_output=True).returncode == 0
    package = tmp_path / "pkg"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    (package / "long.py").write_text(f'def f():\n    """Doc."""\n{body}\n')
    done = subprocess.run([*check, str(package)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "pkg/long.py:f (line 1): 62 lines of code" in done.stdout
