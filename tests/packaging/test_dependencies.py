"""Ranges for users, pins for us: the library declares version ranges, the development environment pins
exact versions (requirements.txt) inside those ranges, and the suite runs with exactly those pins."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
# The packages whose internals the code relies on (pypsrp's message types, psrpcore's server side,
# pyspnego's NTLM primitives in hvsim): pinned for development and hvsim's compatibility tests.
PINNED = ("pulumi", "pypsrp", "psrpcore", "pyspnego")


def _pyproject_ranges() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["sim"]]
    return {r.name: r for r in map(Requirement, declared)}


def _requirements_pins() -> dict[str, Requirement]:
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    requirements = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {r.name: r for r in requirements}


def test_the_library_declares_ranges_and_the_dev_environment_pins_inside_them() -> None:
    ranges, pins = _pyproject_ranges(), _requirements_pins()
    for name in PINNED:
        (pin,) = pins[name].specifier
        assert pin.operator == "==", f"requirements.txt must pin {name} exactly"
        assert not any(spec.operator == "==" for spec in ranges[name].specifier), f"pyproject pins {name}"
        assert pin.version in ranges[name].specifier, f"{name} {pin.version} outside {ranges[name]}"
        assert metadata.version(name) == pin.version, f"the suite runs {name} {metadata.version(name)}"
