"""The CI/CD pipelines under examples/ci/: valid YAML, the five duties docs/ci-cd.md describes, and every
command they run documented in the README."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / "examples" / "ci"
README = (ROOT / "README.md").read_text(encoding="utf-8")
PIPELINES = ("github-actions.yml", "gitlab-ci.yml", "azure-pipelines.yml")
SHELL_SYNTAX = ("if ", "then", "else", "fi")


def _load(name: str) -> dict[str, Any]:
    # GitHub's `on:` is YAML 1.1's boolean True for PyYAML: the key is looked up as such below.
    return yaml.safe_load((CI / name).read_text(encoding="utf-8"))


def _scripts(node: Any) -> Iterator[str]:
    """Every shell script in a pipeline: `run` (GitHub), `script`/`before_script` (GitLab), `bash` (Azure)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("run", "script", "before_script", "bash"):
                yield from [value] if isinstance(value, str) else value
            else:
                yield from _scripts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _scripts(item)


def _commands(name: str) -> list[str]:
    lines = (line.strip() for script in _scripts(_load(name)) for line in script.splitlines())
    return [line for line in lines if line and not line.startswith(("#", *SHELL_SYNTAX))]


@pytest.mark.parametrize("name", PIPELINES)
def test_every_command_is_in_the_readme(name: str) -> None:
    commands = _commands(name)
    assert {"pulumi install", 'pulumi login "$PULUMI_BACKEND_URL"'} <= set(commands)
    assert [c for c in commands if c not in README] == []


@pytest.mark.parametrize("name", PIPELINES)
def test_every_pipeline_previews_updates_renews_and_detects_drift(name: str) -> None:
    commands = " ".join(_commands(name))
    for duty in (
        'pulumi preview --stack "$STACK" --diff',
        'pulumi up --stack "$STACK" --yes',
        'pulumi refresh --stack "$STACK" --yes',
        'pulumi preview --stack "$STACK" --expect-no-changes',
    ):
        assert duty in commands, f"{name} does not run {duty}"
    text = (CI / name).read_text(encoding="utf-8")
    assert "PULUMI_CONFIG_PASSPHRASE" in text and "PULUMI_BACKEND_URL" in text
    assert "staging" in text and "prod" in text  # a stack per environment


def test_github_actions_triggers_runners_and_concurrency() -> None:
    workflow = _load("github-actions.yml")
    triggers = workflow[True]
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    assert len(triggers["schedule"]) == 2  # renewal and drift
    preview, deploy = workflow["jobs"]["preview"], workflow["jobs"]["deploy"]
    assert preview["runs-on"] == "ubuntu-latest"  # preview contacts no host
    assert "self-hosted" in deploy["runs-on"]
    assert deploy["concurrency"] == {"group": "pulumi-${{ matrix.stack }}", "cancel-in-progress": False}


def test_gitlab_ci_rules_runner_and_resource_group() -> None:
    pipeline = _load("gitlab-ci.yml")
    assert "merge_request_event" in pipeline["preview"]["rules"][0]["if"]
    for job in ("up", "drift"):
        assert pipeline[job]["resource_group"] == "pulumi-$STACK"
        assert pipeline[job]["tags"] == ["hyperv-winrm"]
    assert any("schedule" in rule["if"] for rule in pipeline["up"]["rules"])
    assert pipeline[".pulumi"]["parallel"]["matrix"] == [{"STACK": ["staging", "prod"]}]


def test_azure_pipeline_triggers_and_locking() -> None:
    pipeline = _load("azure-pipelines.yml")
    assert pipeline["pr"]["branches"]["include"] == ["main"]
    assert {s["displayName"] for s in pipeline["schedules"]} == {"renewal", "drift"}
    assert pipeline["lockBehavior"] == "sequential"


def test_the_readme_and_the_guide_point_at_each_other() -> None:
    guide = (ROOT / "docs" / "ci-cd.md").read_text(encoding="utf-8")
    assert "docs/ci-cd.md" in README
    for name in PIPELINES:
        assert f"examples/ci/{name}" in guide
