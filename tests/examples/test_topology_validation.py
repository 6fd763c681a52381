"""hvreplica_provider.topology refuses an inconsistent topology before declaring any resource."""

from __future__ import annotations

import pytest

from hvreplica_provider.topology import (
    ReplicationFlow,
    TopologyError,
    partners,
    relationship_key,
    validate,
)

A, B, C = "host1.contoso.com", "host2.fabrikam.com", "host3.northwind.com"


@pytest.mark.parametrize(
    ("members", "flows", "settings", "message"),
    [
        ((A, A.upper()), [], {}, "host1.contoso.com is listed more than once"),
        ((A, B), [ReplicationFlow(A, C, ("vm",))], {}, "replica 'host3.northwind.com' is not a host"),
        ((A, B), [ReplicationFlow(A, A, ("vm",))], {}, "primary and replica are the same host"),
        (
            (A, B, C),
            [ReplicationFlow(A, B, ("vm",)), ReplicationFlow(A, C, ("vm",))],
            {},
            "VM 'vm' of host1.contoso.com is listed twice",
        ),
        ((A, B), [], {"frequency": 30}, "unknown relationship setting.*frequency; known: frequency_sec"),
    ],
)
def test_inconsistent_topologies_are_refused(members, flows, settings, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        validate(members, flows, settings)


def test_partners_cover_both_directions_once() -> None:
    flows = [ReplicationFlow(A, B, ("web",)), ReplicationFlow(B, A, ("app",)), ReplicationFlow(C, A, ("db",))]
    validate([A, B, C], flows, {"frequency_sec": 30})
    assert partners(A, flows) == [B, C]
    assert partners(B.upper(), flows) == [A]
    assert relationship_key("HOST1.contoso.com", "Web 01") == "host1.contoso.com/Web 01"
