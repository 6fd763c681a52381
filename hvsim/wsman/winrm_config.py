"""The `winrm/config` resource (a WS-Transfer Get on `.../wsman/1/config`) shaped like a Windows reply.

pypsrp's `update_max_payload_size()` reads only MaxEnvelopeSizekb, but other clients walk the whole tree, so
every element a real host returns is present, in its order. Values describe what this emulator actually does
(Basic and certificate auth on HTTPS, Negotiate on HTTP, no Kerberos or CredSSP) and otherwise the Windows
Server 2012 R2+ defaults.
"""

from __future__ import annotations

from hvsim.wsman.psrp import MAX_SHELLS_PER_USER
from hvsim.wsman.soap import NS_CONFIG, element

MAX_ENVELOPE_SIZE_KB = 500  # observed default on Server 2012 R2 and later
MAX_TIMEOUT_MS = 60000

# (name, text or nested entries), in the order WinRM writes them.
_Tree = list[tuple[str, "str | _Tree"]]
_PORTS: _Tree = [("HTTP", "5985"), ("HTTPS", "5986")]
_CONFIG: _Tree = [
    ("MaxEnvelopeSizekb", str(MAX_ENVELOPE_SIZE_KB)),
    ("MaxTimeoutms", str(MAX_TIMEOUT_MS)),
    ("MaxBatchItems", "32000"),
    ("MaxProviderRequests", "4294967295"),
    (
        "Client",
        [
            ("NetworkDelayms", "5000"),
            ("URLPrefix", "wsman"),
            ("AllowUnencrypted", "false"),
            (
                "Auth",
                [
                    ("Basic", "true"),
                    ("Digest", "true"),
                    ("Kerberos", "true"),
                    ("Negotiate", "true"),
                    ("Certificate", "true"),
                    ("CredSSP", "false"),
                ],
            ),
            ("DefaultPorts", _PORTS),
            ("TrustedHosts", ""),
        ],
    ),
    (
        "Service",
        [
            ("RootSDDL", "O:NSG:BAD:P(A;;GA;;;BA)(A;;GR;;;IU)S:P(AU;FA;GA;;;WD)(AU;SA;GXGW;;;WD)"),
            ("MaxConcurrentOperations", "4294967295"),
            ("MaxConcurrentOperationsPerUser", "1500"),
            ("EnumerationTimeoutms", "240000"),
            ("MaxConnections", "300"),
            ("MaxPacketRetrievalTimeSeconds", "120"),
            ("AllowUnencrypted", "false"),
            (
                "Auth",
                [
                    ("Basic", "true"),
                    ("Kerberos", "false"),
                    ("Negotiate", "true"),
                    ("Certificate", "true"),
                    ("CredSSP", "false"),
                    ("CbtHardeningLevel", "Relaxed"),
                ],
            ),
            ("DefaultPorts", _PORTS),
            ("IPv4Filter", "*"),
            ("IPv6Filter", "*"),
            ("EnableCompatibilityHttpListener", "false"),
            ("EnableCompatibilityHttpsListener", "false"),
            ("CertificateThumbprint", ""),
            ("AllowRemoteAccess", "true"),
        ],
    ),
    (
        "Winrs",
        [
            ("AllowRemoteShellAccess", "true"),
            ("IdleTimeout", "7200000"),
            ("MaxConcurrentUsers", "10"),
            ("MaxShellRunTime", "2147483647"),
            ("MaxProcessesPerShell", "25"),
            ("MaxMemoryPerShellMB", "1024"),
            ("MaxShellsPerUser", str(MAX_SHELLS_PER_USER)),
        ],
    ),
]


def _render(entries: _Tree) -> str:
    parts = []
    for name, value in entries:
        inner = _render(value) if not isinstance(value, str) else None
        parts.append(element(f"cfg:{name}", value) if inner is None else f"<cfg:{name}>{inner}</cfg:{name}>")
    return "".join(parts)


def config_body() -> str:
    """The SOAP body of the Get reply for the `winrm/config` resource."""
    return f'<cfg:Config xmlns:cfg="{NS_CONFIG}">{_render(_CONFIG)}</cfg:Config>'
