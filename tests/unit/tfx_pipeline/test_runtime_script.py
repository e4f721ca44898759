"""scripts/tfx_runtime.sh outside its bubblewrap root filesystem: in the TFX image (the root
filesystem is the runtime) `run` and `check` execute in place with the TFX venv first on PATH and
plugins/ on PYTHONPATH, without bwrap or root; where there is no runtime at all it stops and says
what to do. A throwaway venv of this Python stands in for /opt/tfx-venv (TAXI_TFX_VENV), a copy
of the script with plugins/ and no runtime/ for /opt/taxi (the images carry no recipe), and stubs
of bwrap and debootstrap record any call."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from fixtures.env import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "tfx_runtime.sh"


@pytest.fixture
def tfx_venv(tmp_path) -> Path:
    """A venv of this Python at a path of its own: the TFX image's /opt/tfx-venv, in miniature."""
    path = tmp_path / "tfx-venv"
    venv.create(path, with_pip=False, symlinks=True)
    return path


@pytest.fixture
def image_script(tmp_path) -> Path:
    """scripts/tfx_runtime.sh as the images hold it under /opt/taxi: beside plugins/, no runtime/."""
    root = tmp_path / "opt-taxi"
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / SCRIPT.name).write_text(SCRIPT.read_text())
    (root / "plugins").symlink_to(REPO_ROOT / "plugins")
    return root / "scripts" / SCRIPT.name


@pytest.fixture
def tools(tmp_path) -> tuple[Path, Path]:
    """A bin directory whose bwrap and debootstrap only record that they were called."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    for tool in ("bwrap", "debootstrap"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\nexit 97\n')
        (bin_dir / tool).chmod(0o755)
    return bin_dir, calls


def runtime_script(*args: str, tools: tuple[Path, Path], cache: Path, script: Path = SCRIPT, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TAXI_TFX", "VIRTUAL_ENV", "PYTHON"))}
    base |= {"PATH": f"{tools[0]}:/usr/bin:/bin", "TAXI_TFX_RUNTIME_CACHE": str(cache), **env}
    return subprocess.run(["bash", str(script), *args], env=base, capture_output=True, text=True, timeout=60, cwd=cache.parent)


def recorded(tools: tuple[Path, Path]) -> list[str]:
    return tools[1].read_text().splitlines() if tools[1].exists() else []


PROBE = """
import json, os, shutil, sys
import chicago_taxi.tfx_pipeline.layout as layout
print(json.dumps({"python": shutil.which("python"), "prefix": sys.prefix, "pythonpath": os.environ.get("PYTHONPATH"),
                  "virtual_env": os.environ.get("VIRTUAL_ENV"), "layout": layout.__file__, "cwd": os.getcwd()}))
sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize("mode", ["image", None], ids=["TAXI_TFX_RUNTIME=image", "detected"])
def test_in_the_image_run_executes_in_place_with_the_venv_and_plugins(mode, tfx_venv, image_script, tools, tmp_path):
    import json

    bound = tmp_path / "tfx-home" / "pipeline_root"
    env = {"TAXI_TFX_VENV": str(tfx_venv), "TAXI_TFX_BIND": f"{bound}:", "VIRTUAL_ENV": "/somewhere/else"}
    if mode:
        env["TAXI_TFX_RUNTIME"] = mode
    proc = runtime_script("run", "python", "-c", PROBE, "0", tools=tools, cache=tmp_path / "no-cache", script=image_script, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["python"] == str(tfx_venv / "bin" / "python") and Path(seen["prefix"]) == tfx_venv, "the TFX venv comes first on PATH"
    plugins = image_script.parents[1] / "plugins"
    assert seen["pythonpath"] == str(plugins) and seen["layout"].startswith(str(plugins)), "the plugins/ beside the script"
    assert seen["virtual_env"] is None and seen["cwd"] == str(tmp_path)
    assert bound.is_dir(), "TAXI_TFX_BIND's directories exist, as under bwrap"
    assert recorded(tools) == [], "no bwrap, no debootstrap"
    assert not (tmp_path / "no-cache").exists(), "nothing is built or cached"


def test_in_the_image_run_passes_the_commands_exit_code_through(tfx_venv, image_script, tools, tmp_path):
    # 3 is the pipeline's exit code for anomalies: the host step turns it into a failed gate.
    proc = runtime_script("run", "python", "-c", PROBE, "3", tools=tools, cache=tmp_path / "c", script=image_script, TAXI_TFX_VENV=str(tfx_venv))
    assert proc.returncode == 3, proc.stderr


def test_in_the_image_check_imports_the_stack_from_the_venv_and_build_has_nothing_to_do(tfx_venv, image_script, tools, tmp_path):
    # The check's imports, answered by stand-in packages in the venv (the real ones are the image's).
    site = next((tfx_venv / "lib").glob("python3*/site-packages"))
    for name, version in [("tfx", "1.21.0"), ("ml_metadata", "1.21.0"), ("tensorflow", "2.21.0")]:
        (site / f"{name}.py").write_text(f"__version__ = {version!r}\n")
    for name in ("tensorflow_transform", "tensorflow_model_analysis"):
        (site / f"{name}.py").write_text("__version__ = 'stand-in'\n")
    env = {"TAXI_TFX_VENV": str(tfx_venv), "script": image_script}
    check = runtime_script("check", tools=tools, cache=tmp_path / "c", **env)
    assert check.returncode == 0, check.stderr
    assert "tfx 1.21.0, ml-metadata 1.21.0, tensorflow 2.21.0, tensorflow-transform stand-in" in check.stdout
    assert f"Python {sys.version.split()[0]}" in check.stdout
    build = runtime_script("build", tools=tools, cache=tmp_path / "c", **env)
    assert build.returncode == 0 and "TFX image" in build.stdout and "nothing to build" in build.stdout, build.stdout + build.stderr
    assert runtime_script("path", tools=tools, cache=tmp_path / "c", **env).stdout.strip() == "/"
    assert recorded(tools) == [] and not (tmp_path / "c").exists()


@pytest.mark.parametrize("layout", ["checkout", "project image"])
def test_without_any_runtime_run_stops_and_says_what_to_do(layout, image_script, tools, tmp_path):
    """A checkout with no runtime built, or the project image (compose's LocalExecutor scheduler:
    no venv, no recipe): the same message, whether or not the recipe is there to hash."""
    script = SCRIPT if layout == "checkout" else image_script
    absent = tmp_path / "absent"
    proc = runtime_script("run", "python", "-c", "pass", tools=tools, cache=tmp_path / "empty", script=script, TAXI_TFX_VENV=str(absent))
    assert proc.returncode == 1
    message = proc.stderr
    assert message.startswith("no TFX runtime here") and str(absent) in message, message
    assert "make tfx-runtime" in message, "natively: build it"
    assert "'tfx' queue" in message and "airflow-worker-tfx" in message and "TAXI_TFX_IMAGE" in message, "deployed: where the TFX image runs"
    assert recorded(tools) == []


def test_an_image_mode_without_the_venv_is_refused(tools, tmp_path):
    proc = runtime_script("run", "true", tools=tools, cache=tmp_path / "c", TAXI_TFX_RUNTIME="image", TAXI_TFX_VENV=str(tmp_path / "absent"))
    assert proc.returncode == 1 and "not the TFX image" in proc.stderr
    wrong = runtime_script("run", "true", tools=tools, cache=tmp_path / "c", TAXI_TFX_RUNTIME="docker")
    assert wrong.returncode == 2 and "expected image or bwrap" in wrong.stderr


def test_natively_run_still_enters_the_cached_root_filesystem_with_bwrap(tools, tmp_path):
    """No venv here: the built runtime of this recipe (its cache entry marked complete) under bwrap."""
    cache = tmp_path / "cache"
    env = {"TAXI_TFX_VENV": str(tmp_path / "absent")}
    rootfs = Path(runtime_script("path", tools=tools, cache=cache, **env).stdout.strip())
    assert rootfs.is_relative_to(cache)
    rootfs.mkdir(parents=True)
    (rootfs.parent / ".complete").write_text("built\n")
    proc = runtime_script("run", "python", "-c", "pass", tools=tools, cache=cache, **env)
    assert proc.returncode == 97, "the stub bwrap's exit code"
    (call,) = recorded(tools)
    assert call.startswith(f"bwrap --bind {rootfs} / ") and call.endswith(" python -c pass")
    assert f"--setenv PYTHONPATH {REPO_ROOT / 'plugins'}" in call
