"""hvreplica_provider.topology refuses an inconsistent topology before declaring any resource."""

from __future__ import annotations

import pytest

from hvreplica_provider.topology import (
    ReplicationFlow,
    TopologyError,
    extended_settings,
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
        ((A, B), [ReplicationFlow(A, B, ("vm",), extend_to=C)], {}, "extend_to .host3.northwind.com. is not"),
        ((A, B), [ReplicationFlow(A, B, ("vm",), extend_to=A)], {}, "extend_to must be a third host"),
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


def test_an_extended_leg_links_the_replica_and_the_third_host() -> None:
    flows = [ReplicationFlow(A, B, ("vm",), extend_to=C)]
    validate([A, B, C], flows)
    assert (partners(A, flows), partners(B, flows), partners(C, flows)) == ([B], [A, C], [B])


@pytest.mark.parametrize(("first", "extended"), [(30, 300), (300, 300), (900, 900), (None, 300)])
def test_extended_legs_get_the_settings_windows_allows(first: int | None, extended: int) -> None:
    settings = {"frequency_sec": first, "vss_snapshot_frequency_hour": 4, "recovery_history": 4,
                "excluded_vhd_paths": ["D:\\x.vhdx"], "wait_for_initial_replication": True}
    assert extended_settings(settings) == {"frequency_sec": extended, "recovery_history": 4}
