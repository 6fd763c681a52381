"""The package's public surface: what the README shows is importable from the root, `dir()` lists it,
`__version__` is the distribution's, every Args field carries a docstring, and no docstring points at
a file that is not in the repository."""

from __future__ import annotations

import ast
import dataclasses
import re
import typing
from importlib import metadata
from pathlib import Path

import pytest
from pulumi.dynamic import Resource, ResourceProvider

import hvreplica_provider
from hvreplica_provider import inputs

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCUMENTED_TYPES = {
    "ReplicaTopology",
    "TopologyHost",
    "ReplicationFlow",
    "HostConnection",
    "HostConnectionArgs",
    "topology_from_config",
}


def _readme_imports() -> set[str]:
    """Names the README imports `from hvreplica_provider import ...` (one line or parenthesised)."""
    names: set[str] = set()
    # A list continues on the next line only after a comma (or inside parentheses).
    pattern = r"from hvreplica_provider import (?:\(([^)]*)\)|((?:[\w ]+,[ \t]*\n?)*[\w ]+))"
    for match in re.finditer(pattern, README):
        listed = match.group(1) or match.group(2)
        names.update(n.strip() for n in listed.split(",") if n.strip())
    return names


def test_everything_the_readme_imports_comes_from_the_root() -> None:
    shown = _readme_imports()
    assert shown >= DOCUMENTED_TYPES, "the README shows the topology and connection types"
    for name in shown:
        assert name in hvreplica_provider.__all__, name
        getattr(hvreplica_provider, name)


def test_root_exports_are_listed_and_of_the_right_kind() -> None:
    assert set(dir(hvreplica_provider)) >= {*hvreplica_provider.__all__, "__version__"}
    for name in (
        "CertificateAuthority",
        "HostCertificate",
        "ReplicaServer",
        "ReplicationRelationship",
        "TestFailover",
    ):
        assert issubclass(getattr(hvreplica_provider, name), Resource)
        assert issubclass(getattr(hvreplica_provider, f"{name}Provider"), ResourceProvider)
        assert dataclasses.is_dataclass(getattr(hvreplica_provider, f"{name}Args"))
    assert typing.get_args(hvreplica_provider.ReplicationFrequency) == (30, 300, 900)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        hvreplica_provider.Nope  # noqa: B018


def test_version_is_the_distributions() -> None:
    assert hvreplica_provider.__version__ == metadata.version("hvreplica")


def test_host_connection_args_mirror_the_parsed_connection() -> None:
    """The TypedDict users write and the dataclass the providers parse have the same keys."""
    typed = set(inputs.HostConnectionArgs.__required_keys__ | inputs.HostConnectionArgs.__optional_keys__)
    assert typed == {f.name for f in dataclasses.fields(hvreplica_provider.HostConnection)}
    assert inputs.HostConnectionArgs.__required_keys__ == {"host"}


def _documented_classes() -> dict[str, ast.ClassDef]:
    """Every Args class of the package plus the topology's and the inputs' data classes, by name."""
    wanted = {"TopologyHost", "ReplicationFlow", "CertificateOptions", "ReplicationOptions"}
    found: dict[str, ast.ClassDef] = {}
    for path in (ROOT / "hvreplica_provider").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and (
                node.name.endswith("Args") or node.name in wanted or path.name == "inputs.py"
            ):
                found[node.name] = node
    return found


def test_every_args_field_has_a_docstring() -> None:
    classes = _documented_classes()
    assert {"ReplicaServerArgs", "HostConnectionArgs", "TopologyHost"} <= set(classes)
    undocumented = []
    for name, cls in classes.items():
        body = cls.body
        for i, statement in enumerate(body):
            if isinstance(statement, ast.AnnAssign):
                following = body[i + 1] if i + 1 < len(body) else None
                documented = isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                if not documented:
                    undocumented.append(f"{name}.{ast.unparse(statement.target)}")
    assert undocumented == []


@pytest.mark.parametrize("package", ["hvreplica_provider", "hvsim"])
def test_no_docstring_points_at_a_missing_file(package: str) -> None:
    missing = []
    for path in (ROOT / package).rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for mention in re.findall(r"(?:[\w.-]+/)+[\w.-]+\.(?:md|py|toml|ya?ml|sh)\b|[\w.-]+\.md\b", text):
            if not (ROOT / mention).is_file():
                missing.append(f"{path.relative_to(ROOT)}: {mention}")
    assert missing == []


def test_the_readme_python_examples_are_valid_python_using_root_exports() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "hvreplica_provider":
                assert {alias.name for alias in node.names} <= set(hvreplica_provider.__all__)
