"""The wheel a user gets: built from a copy of the sources, installed into fresh virtualenvs OUTSIDE the
repository, imported and run from there.

Two environments: a bare one (the wheel alone, no dependencies) shows that the package root and the
`hvsim` console script load without the heavy dependencies and that `hvsim serve` names the `sim`
extra; a full one sees this test environment's installed packages (through a path entry, so nothing is
downloaded) and imports every public name and runs `hvsim --help`. Building needs the build backend
(setuptools, from pip's cache or the package index).
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Sequence
from email.message import Message
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "hvreplica_provider", "hvsim")
BIN = "Scripts" if os.name == "nt" else "bin"
EXE = ".exe" if os.name == "nt" else ""


def _run(args: Sequence[str | Path], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _venv(path: Path, wheel: Path, extra_path: str | None = None) -> Path:
    """A fresh virtualenv at `path` with the wheel installed (no dependencies); returns its python."""
    _run([sys.executable, "-m", "venv", "--without-pip", path], cwd=path.parent)
    python = path / BIN / f"python{EXE}"
    if extra_path is not None:
        purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], path)
        Path(purelib.stdout.strip(), "dev-dependencies.pth").write_text(extra_path + "\n")
    # This environment's pip installs into the new one; --ignore-installed so that the editable install
    # of the repository, visible through the path entry, is neither reused nor touched.
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--no-deps"]
    _run([*pip, "--ignore-installed", "--no-warn-script-location", wheel], cwd=path.parent)
    return python


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(source, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", src], work, 600)
    (built,) = (work / "dist").glob("hvreplica-*.whl")
    return built


def _metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))


def test_wheel_metadata(wheel: Path) -> None:
    meta = _metadata(wheel)
    assert meta["Name"] == "hvreplica" and meta["Version"] == metadata.version("hvreplica")
    assert meta["License-Expression"] == "Apache-2.0" and meta["License-File"] == "LICENSE"
    assert meta["Description-Content-Type"] == "text/markdown" and "# hvreplica" in meta.get_payload()
    assert any(url.startswith("Source, https://") for url in meta.get_all("Project-URL"))
    assert "Typing :: Typed" in meta.get_all("Classifier")
    requirements = [Requirement(r) for r in meta.get_all("Requires-Dist")]
    runtime = {r.name: r for r in requirements if r.marker is None}
    sim = {r.name: r for r in requirements if r.marker is not None and r.marker.evaluate({"extra": "sim"})}
    assert {"pulumi", "cryptography", "pypsrp"} <= set(runtime) and {"psrpcore", "pyspnego"} <= set(sim)
    for requirement in [*runtime.values(), *sim.values()]:
        assert not any(spec.operator == "==" for spec in requirement.specifier), f"pinned: {requirement}"
        # The versions this suite runs with satisfy the published ranges.
        assert metadata.version(requirement.name) in requirement.specifier, requirement
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "hvsim = hvsim.__main__:main" in entry_points
    assert {"hvreplica_provider/py.typed", "hvreplica_provider/testing.py", "hvsim/py.typed"} <= set(names)
    assert not any(name.startswith(("tests/", "examples/")) for name in names)


def test_bare_install_imports_and_names_the_sim_extra(wheel: Path, tmp_path: Path) -> None:
    python = _venv(tmp_path / "bare", wheel)
    probe = "import hvreplica_provider as h; print(h.__version__); print(h.__file__)"
    version, location = _run([python, "-c", probe], cwd=tmp_path).stdout.split()
    assert version == metadata.version("hvreplica")
    assert Path(location).is_relative_to(tmp_path / "bare")
    hvsim = tmp_path / "bare" / BIN / f"hvsim{EXE}"
    assert "serve" in _run([hvsim, "--help"], cwd=tmp_path).stdout
    lab = tmp_path / "lab.toml"
    lab.write_text('[[host]]\nfqdn = "hv1.contoso.com"\naddress = "127.0.0.1"\n')
    served = subprocess.run(
        [hvsim, "serve", "--config", lab], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert served.returncode == 2
    assert "pip install 'hvreplica[sim]'" in served.stderr


def test_full_install_outside_the_repository(wheel: Path, tmp_path: Path) -> None:
    python = _venv(tmp_path / "full", wheel, extra_path=sysconfig.get_paths()["purelib"])
    probe = (
        "import hvreplica_provider as h, hvreplica_provider.stack, hvreplica_provider.testing, hvsim.server\n"
        "assert all(getattr(h, name) is not None for name in h.__all__)\n"
        "print(h.__file__, hvsim.server.__file__)"
    )
    for location in _run([python, "-c", probe], cwd=tmp_path).stdout.split():
        assert Path(location).is_relative_to(tmp_path / "full"), location
    usage = _run([tmp_path / "full" / BIN / f"hvsim{EXE}", "--help"], cwd=tmp_path).stdout
    assert usage.startswith("usage: hvsim") and "dump" in usage and "fault" in usage
