"""The engine harness against the real provider server, with a probe provider that echoes what it got.

These pin the wire shapes every other engine-contract test relies on: integers arrive as floats,
diff/update/read/delete get the old outputs, a replace creates before it deletes, logs are captured,
and the harness can drive more calls at once than the server's four worker threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from pulumi.output import Unknown

from tests.engine.probe_provider import ProbeProvider
from tests.support.engine import (
    UNKNOWN,
    ProviderCallError,
    ProviderServer,
    ResourceState,
    dynamic_type,
    with_provider,
)

TYPE = dynamic_type("", "Resource")


@pytest.fixture(scope="module")
def server(module_provider_servers) -> ProviderServer:
    return module_provider_servers()


def test_lifecycle_follows_engine_sequences(server: ProviderServer) -> None:
    urn = server.urn(TYPE, "probe-lifecycle")
    created = server.up(urn, ProbeProvider(), {"size": 2048, "label": "a"})
    assert created.op == "create"
    # A Struct has only doubles: the provider sees 2048.0, not 2048.
    assert created.state.outputs["size_type"] == "float"

    same = server.up(urn, ProbeProvider(), {"size": 2048, "label": "a"}, created.state)
    assert same.op == "same" and same.state.outputs == created.state.outputs

    updated = server.up(urn, ProbeProvider(), {"size": 2048, "label": "b"}, same.state)
    assert updated.op == "update"
    assert updated.state.outputs["serial"] == created.state.id and updated.state.outputs["label"] == "b"
    # Diff received the old outputs (they hold `serial`), not the old inputs.
    server.wait_for_log(rf"diff {created.state.id} olds_have_outputs=True")

    replaced = server.up(urn, ProbeProvider(), {"size": 4096, "label": "b"}, updated.state)
    assert replaced.op == "replace" and replaced.diff is not None and replaced.diff.replaces == ("size",)
    assert replaced.state.id != created.state.id
    assert replaced.original == updated.state  # deleted at the end of the update, as the engine does
    server.finish(replaced)
    server.wait_for_log(rf"delete {created.state.id}\b")  # stdout is drained asynchronously
    log = server.stdout
    # Create-before-delete, with the replacement checked as a fresh resource (olds={}).
    assert log.index(f"create {replaced.state.id}") < log.index(f"delete {created.state.id}")
    assert "check olds=[] size_type=float" in log

    refreshed = server.refresh(replaced.state)
    assert refreshed is not None and refreshed.outputs["refreshed"] is True
    # Read's inputs replace the stored ones, so the next up diffs against the drifted label.
    assert refreshed.inputs["label"] == "drifted" and "__provider" in refreshed.inputs
    assert server.up(urn, ProbeProvider(), {"size": 4096, "label": "b"}, refreshed).op == "update"

    server.destroy(refreshed)
    server.wait_for_log(rf"delete {replaced.state.id} serial={replaced.state.id}")


def test_preview_unknowns_reach_check(server: ProviderServer) -> None:
    urn = server.urn(TYPE, "probe-preview")
    outcome = server.check(urn, with_provider(ProbeProvider(), {"size": UNKNOWN}))
    # The provider sees an Unknown (not a string) and the harness decodes it back into one.
    server.wait_for_log("size_type=Unknown")
    assert isinstance(outcome.inputs["size"], Unknown)
    assert outcome.failures == []


def test_provider_exceptions_surface_as_call_errors(server: ProviderServer) -> None:
    urn = server.urn(TYPE, "probe-broken")
    state = ResourceState(urn, "probe-x", {}, with_provider(ProbeProvider(), {}))
    # delete() reads props["serial"]: the KeyError comes back as gRPC UNKNOWN with the traceback.
    with pytest.raises(ProviderCallError) as err:
        server.destroy(state)
    assert err.value.method == "Delete" and "KeyError: 'serial'" in err.value.details


def test_concurrent_calls_share_four_server_threads(server: ProviderServer) -> None:
    blob = with_provider(ProbeProvider(), {})["__provider"]

    def create(i: int) -> dict:
        return server.up(server.urn(TYPE, f"probe-par-{i}"), blob, {"size": i, "sleep": 0.2}).state.outputs

    with ThreadPoolExecutor(max_workers=20) as pool:
        outputs = list(pool.map(create, range(20)))
    assert len({o["serial"] for o in outputs}) == 20
    # The server runs at most four calls at once: 20 creates never overlap by more than 4, and some do.
    events = sorted([(o["started"], 1) for o in outputs] + [(o["finished"], -1) for o in outputs])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert 2 <= peak <= 4
