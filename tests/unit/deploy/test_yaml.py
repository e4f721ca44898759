"""yamllint over the whole repository with the root .yamllint.yaml, strict (warnings fail too), and
the config itself: it still ignores the runtime directories, so yamllint never lints runtime state
(MLflow's meta.yaml files, Airflow homes, the virtualenv's packages)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from yamllint.config import YamlLintConfig

from fixtures.env import REPO_ROOT

CONFIG = REPO_ROOT / ".yamllint.yaml"


def yamllint(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "yamllint", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def runtime_dirs(gitignore: str) -> list[str]:
    """The virtualenv and the directories .gitignore lists as runtime state (its block that starts
    with `# runtime state`, up to the next comment or blank line)."""
    block = gitignore.split("# runtime state", 1)[1].split("\n", 1)[1]
    dirs = [".venv/"]
    for line in block.splitlines():
        if not line.strip() or line.startswith("#"):
            break
        if line.endswith("/") and not any(c in line for c in "*?["):
            dirs.append(line)
    return dirs


def not_ignored(config: Path, dirs: list[str]) -> list[str]:
    """The directories whose YAML files (as yamllint walks `.`) the config would lint."""
    conf = YamlLintConfig(file=str(config))
    return [d for d in dirs if not all(conf.is_file_ignored(f"./{d}{name}") for name in ("a.yaml", "nested/b.yml"))]


def test_the_repository_passes_yamllint_strict():
    proc = yamllint("-c", str(CONFIG), "-s", "-f", "parsable", ".")
    assert proc.returncode == 0, f"yamllint -c .yamllint.yaml -s . (warnings count):\n{proc.stdout}{proc.stderr}"


def test_strict_yamllint_fails_on_a_planted_warning(tmp_path):
    shutil.copy(CONFIG, tmp_path / ".yamllint.yaml")
    (tmp_path / "planted.yaml").write_text("enabled: yes\n")  # truthy: a warning, not an error
    assert yamllint("-c", ".yamllint.yaml", ".", cwd=tmp_path).returncode == 0
    proc = yamllint("-c", ".yamllint.yaml", "-s", ".", cwd=tmp_path)
    assert proc.returncode == 2 and "truthy" in proc.stdout, proc.stdout + proc.stderr


def test_the_config_ignores_the_runtime_directories():
    dirs = runtime_dirs((REPO_ROOT / ".gitignore").read_text())
    assert {".venv/", "var/", "mlflow/", "logs/", "reports/"} <= set(dirs), dirs
    missing = not_ignored(CONFIG, dirs)
    assert not missing, f".yamllint.yaml does not ignore the runtime directories {missing}"


def test_the_runtime_check_fails_when_a_directory_is_no_longer_ignored(tmp_path):
    planted = tmp_path / ".yamllint.yaml"
    planted.write_text(re.sub(r"^  mlflow/\n", "", CONFIG.read_text(), flags=re.M))
    assert not_ignored(planted, ["var/", "mlflow/"]) == ["mlflow/"]


def test_yamllint_lints_no_file_git_ignores():
    """What yamllint really walks: none of its files is ignored by git (runtime state)."""
    listed = yamllint("-c", str(CONFIG), "--list-files", ".")
    assert listed.returncode == 0, listed.stderr
    files = [line.removeprefix("./") for line in listed.stdout.splitlines() if line]
    assert files, "yamllint found no YAML file"
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=REPO_ROOT, input="\n".join(files), capture_output=True, text=True)
    assert ignored.returncode in (0, 1), ignored.stderr
    assert not ignored.stdout.strip(), f"yamllint lints files git ignores (runtime state):\n{ignored.stdout}"
