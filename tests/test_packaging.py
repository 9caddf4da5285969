"""A plain ``pip install .`` (a wheel, not the source tree) carries everything oaiod needs at run time."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Build from a clean copy: setuptools reuses a source tree's build/ folder and would pack stale files.
    source = out / "src"
    junk = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".venv")
    shutil.copytree(ROOT, source, ignore=junk)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = out.glob("oaiod-*.whl")
    return found


def test_wheel_carries_migrations_and_service_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for env in ("hub", "daemon"):
        assert f"oaiod/_migrations/{env}/env.py" in names
        assert any(n.startswith(f"oaiod/_migrations/{env}/versions/") and n.endswith(".py") for n in names)
        assert f"oaiod/_migrations/{env}/script.py.mako" in names
    assert "oaiod/py.typed" in names
    assert not any(n.startswith(("tests/", "migrations/")) for n in names)
    assert "oaiod/http.py" not in names  # a module turned package leaves no stale copy behind


def test_installed_wheel_upgrades_both_databases(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # The dependencies come from this interpreter's site folders (the checkout's .venv on a fresh machine, where the
    # system Python has none), named as plain paths: their .pth files are not run, so the editable install of the
    # checkout stays out and ``import oaiod`` finds the wheel.
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (env_dir / "lib" / version / "site-packages" / "parent-site.pth").write_text("\n".join(site.getsitepackages()))
    # pip of this interpreter installs into the venv; --no-deps: the dependencies are those above.
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    script = (
        "import oaiod, oaiod.migrate as m, sys;"
        "assert oaiod.__file__.startswith(sys.prefix), oaiod.__file__;"  # the wheel, in this venv
        "m.upgrade('hub', 'sqlite:///' + sys.argv[1] + '/hub.db');"
        "m.upgrade('daemon', 'sqlite:///' + sys.argv[1] + '/state.db');"
        "print(m.migrations_root())"
    )
    result = subprocess.run(
        [str(python), "-I", "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "oaiod/_migrations" in result.stdout
    version = subprocess.run([str(env_dir / "bin" / "oaiod"), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and "oaiod" in version.stdout
