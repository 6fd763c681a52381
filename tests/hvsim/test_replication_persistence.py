"""Replication survives an emulator restart on the same state directory: both legs, their settings, the
recovery points, the replica server and its entries; cycles go on after the restart."""

from __future__ import annotations

import tempfile

from tests.support.hvsim_env import host, lab_config, running_lab
from tests.support.hyperv import (
    make_kerberos_replica,
    props,
    replication_state,
    sessions,
    wait_for,
)

PRIMARY, REPLICA = "hv1.contoso.com", "hv2.contoso.com"


def test_replication_survives_restart() -> None:
    config = lab_config(
        host(PRIMARY, "127.66.0.1", vms=["web01"]), host(REPLICA, "127.66.0.2"), time_scale=3600.0
    )
    with tempfile.TemporaryDirectory(prefix="hvsim-persist-") as state:
        with running_lab(config, state) as emulator, sessions(emulator, PRIMARY, REPLICA) as s:
            make_kerberos_replica(s[REPLICA], PRIMARY, "D:\\Replica")
            s[PRIMARY].ok(
                "Enable-VMReplication",
                VMName="web01",
                ReplicaServerName=REPLICA,
                ReplicaServerPort=80,
                AuthenticationType="Kerberos",
                RecoveryHistory=3,
                ReplicationFrequencySec=30,
            )
            s[PRIMARY].ok("Start-VMInitialReplication", VMName="web01")
            wait_for(lambda: s[REPLICA].ok("Get-VMSnapshot", VMName="web01"), "a recovery point")
            before = props(s[PRIMARY].ok("Get-VMReplication", VMName="web01")[0])

        with running_lab(config, state) as emulator, sessions(emulator, PRIMARY, REPLICA) as s:
            after = props(s[PRIMARY].ok("Get-VMReplication", VMName="web01")[0])
            assert (after["VMId"], after["ReplicationFrequencySec"], after["RecoveryHistory"]) == (
                before["VMId"],
                30,
                3,
            )
            assert replication_state(s[REPLICA], "web01")[0] == "Replicating"
            assert s[REPLICA].ok("Get-VMSnapshot", VMName="web01", SnapshotType="Replica")
            entries = s[REPLICA].ok("Get-VMReplicationAuthorizationEntry")
            assert [props(e)["AllowedPrimaryServer"] for e in entries] == [PRIMARY]
            assert (
                str(props(s[REPLICA].ok("Get-VMReplicationServer")[0])["AllowedAuthenticationType"])
                == "Kerberos"
            )
            wait_for(
                lambda: (
                    props(s[PRIMARY].ok("Get-VMReplication", VMName="web01")[0])["LastReplicationTime"]
                    != after["LastReplicationTime"]
                ),
                "a cycle after the restart",
            )
