"""ReplicaServer: the replication side of one Hyper-V host.

Create and update reconcile the host towards the inputs in a fixed order (trusted CAs, the host
certificate, the revocation-check registry value, the listener firewall rule, the managed hosts-file
block, Set-VMReplicationServer, authorization entries), touching only what differs. What this resource
changed is recorded on the host itself, in an ownership ledger (registry values under
HKLM:\\SOFTWARE\\hvreplica\\ReplicaServer) written in the same invocation as each change and before it,
and mirrored in the `managed` output. A re-run after a failure half-way adopts what the failed attempt
did, and delete undoes exactly that and nothing else, then clears the ledger.
"""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from hvreplica_provider import clock, pki
from hvreplica_provider import hyperv as hv
from hvreplica_provider import windows as win
from hvreplica_provider.engine_values import normalise_ints
from hvreplica_provider.inputs import (
    AllowedPrimaryArgs,
    HostConnectionArgs,
    ReplicaServerAuthentication,
    ReplicaServerCertificateArgs,
)
from hvreplica_provider.remoting import (
    CONNECTION_SECRET_FIELDS,
    HostConnection,
    NotFound,
    RemoteError,
    Session,
    Statement,
    cmd,
    is_type,
    prop,
    text,
)
from hvreplica_provider.resources.base import (
    CheckFailures,
    args_props,
    check_connection,
    contains_unknown,
    control_problem,
    secret_inputs,
    user_properties,
)

DEFAULT_CERTIFICATE_PORT = 443
DEFAULT_KERBEROS_PORT = 80
_MAX_TRUST_GROUP = 256  # a name, not a document
SECRET_INPUTS = (
    *(f"connection.{name}" for name in CONNECTION_SECRET_FIELDS),
    "certificate.pfx_base64",
    "certificate.pfx_password",
)
# Inputs that only matter to this provider: changing them never touches the host.
LOCAL_KEYS = ("connection", "fqdn", "partner_trusted_ca_certs", "restart_vmms_on_revocation_change")
HOST_KEYS = (
    "certificate",
    "trusted_ca_certs",
    "disable_revocation_check",
    "authentication",
    "certificate_port",
    "kerberos_port",
    "replication_enabled",
    "allowed_primaries",
    "allow_any_primary",
    "default_storage_location",
    "open_firewall",
    "hosts_entries",
)
COMPUTED_KEYS = (
    "server",
    "authorization_entries",
    "revocation_check_disabled",
    "firewall_rules",
    "certificate_thumbprint",
    "managed",
)
RULES_BY_AUTH = {
    "Certificate": (win.FIREWALL_HTTPS_RULE,),
    "Kerberos": (win.FIREWALL_HTTP_RULE,),
    "CertificateAndKerberos": (win.FIREWALL_HTTPS_RULE, win.FIREWALL_HTTP_RULE),
}
LEDGER = win.ledger_key("ReplicaServer")
# Ledger value kinds for the items this resource owns, and the Managed lists they fill.
_LEDGER_LISTS = {
    "RootCertificate": "ca_thumbprints",
    "HostCertificate": "certificate_thumbprints",
    "FirewallRule": "firewall_rules",
    "CreatedFirewallRule": "created_firewall_rules",
    "AuthorizationEntry": "entries",
}
_LEDGER_SERVER_PRIOR = "ServerPrior"


@dataclass(frozen=True)
class _RevocationSite:
    """One registry key holding DisableCertRevocationCheck, and the Managed fields and ledger value names
    that record what this resource did to it (the Replication key's names predate the second key)."""

    key: str
    set_field: str  # the value was changed by this resource
    prior_field: str  # its value before (None: absent)
    created_field: str  # the key did not exist before
    ledger_prior: str
    ledger_created: str


_REVOCATION_SITES = (
    _RevocationSite(
        win.REPLICATION_KEY,
        "revocation_value_set",
        "revocation_value_prior",
        "replication_key_created",
        "RevocationValuePrior",
        "ReplicationKeyCreated",
    ),
    _RevocationSite(
        win.FAILOVER_REPLICATION_KEY,
        "failover_revocation_value_set",
        "failover_revocation_value_prior",
        "failover_key_created",
        "FailoverRevocationValuePrior",
        "FailoverReplicationKeyCreated",
    ),
)


# ------------------------------------------------------------------------------------------ host state


@dataclass(frozen=True)
class RevocationSetting:
    """One key holding DisableCertRevocationCheck as read: the key (None: absent) and the value."""

    key: win.RegistryKeyInfo | None
    value: int | None


@dataclass
class HostState:
    """Everything this resource looks at on one host, read in ONE invocation."""

    my: list[win.StoreCertificate]
    root: list[win.StoreCertificate]
    revocation: dict[str, RevocationSetting]  # by key, one per win.REVOCATION_KEYS
    firewall: dict[str, win.FirewallRule]
    hosts_lines: list[str]
    server: hv.ReplicationServerSettings
    entries: list[hv.AuthorizationEntry]
    replications: list[hv.VMReplicationInfo]
    ledger: win.LedgerState

    def thumbprints(self, store: str) -> set[str]:
        return {c.thumbprint for c in (self.my if store == win.MY_STORE else self.root)}

    @property
    def revocation_check_disabled(self) -> bool:
        return all(setting.value == 1 for setting in self.revocation.values())


def read_host(session: Session) -> HostState:
    result = session.run(
        *(win.key_info_cmd(key) for key in win.REVOCATION_KEYS),
        win.list_certificates_cmd(win.MY_STORE),
        win.list_certificates_cmd(win.ROOT_STORE),
        *(win.registry_values_cmd(key) for key in win.REVOCATION_KEYS),
        win.firewall_rules_cmd([win.FIREWALL_HTTPS_RULE, win.FIREWALL_HTTP_RULE, win.LISTENER_RULE_PATTERN]),
        win.hosts_read_cmd(),
        *hv.server_read_cmds(),
        hv.replication_read_cmd(),
        *win.ledger_read_cmds(LEDGER),
    )
    # Absent registry key, ledger or firewall rule: no object comes back, which is what "absent" means here.
    # Every other error (access denied, ...) is raised.
    result.raise_errors(allow=(NotFound,))
    out = result.output
    certs = [o for o in out if is_type(o, "System.Security.Cryptography.X509Certificates.X509Certificate2")]
    server = hv.parse_server(out)
    if server is None:
        raise NotFound(
            "Get-VMReplicationServer returned nothing; is the Hyper-V role installed?",
            cmdlet="Get-VMReplicationServer",
            host=session.host,
        )
    return HostState(
        my=win.parse_certificates([c for c in certs if _store_of(c) == "my"]),
        root=win.parse_certificates([c for c in certs if _store_of(c) == "root"]),
        revocation={
            key: RevocationSetting(
                win.parse_key_info(out, key),
                win.parse_dword(win.registry_objects(out, key), win.REVOCATION_VALUE),
            )
            for key in win.REVOCATION_KEYS
        },
        firewall=win.parse_firewall_rules(out),
        hosts_lines=win.hosts_lines(out),
        server=server,
        entries=hv.parse_entries(out),
        replications=hv.parse_replications(out),
        ledger=win.parse_ledger(out, LEDGER),
    )


def _store_of(cert: Any) -> str:
    # PSParentPath is "Microsoft.PowerShell.Security\Certificate::LocalMachine\My" (or \Root).
    return text(prop(cert, "PSParentPath")).rsplit("\\", 1)[-1].lower()


# ------------------------------------------------------------------------------------------ desired state


@dataclass(frozen=True)
class Desired:
    authentication: str
    certificate_pfx: bytes | None
    certificate_password: str | None
    certificate_thumbprint: str
    trusted_ca_pems: tuple[str, ...]
    disable_revocation_check: bool
    certificate_port: int
    kerberos_port: int
    replication_enabled: bool
    allow_any_primary: bool
    default_storage_location: str
    entries: tuple[hv.AuthorizationEntry, ...]
    open_firewall: bool
    hosts_entries: dict[str, str]
    restart_vmms_on_revocation_change: bool = False

    @property
    def firewall_rules(self) -> tuple[str, ...]:
        return RULES_BY_AUTH[self.authentication] if self.replication_enabled else ()

    @property
    def listener_rules(self) -> tuple[win.ListenerRule, ...]:
        """Rules of their own for listener ports the stock rules (TCP 443/80) do not cover."""
        if not self.replication_enabled:
            return ()
        rules = []
        if self.uses_certificate and self.certificate_port != DEFAULT_CERTIFICATE_PORT:
            rules.append(win.ListenerRule("HTTPS", self.certificate_port))
        if self.authentication != "Certificate" and self.kerberos_port != DEFAULT_KERBEROS_PORT:
            rules.append(win.ListenerRule("HTTP", self.kerberos_port))
        return tuple(rules)

    def server(self) -> hv.ReplicationServerSettings:
        return hv.ReplicationServerSettings(
            replication_enabled=self.replication_enabled,
            authentication=self.authentication if self.replication_enabled else "",
            certificate_thumbprint=self.certificate_thumbprint
            if self.replication_enabled and self.uses_certificate
            else "",
            certificate_port=self.certificate_port,
            kerberos_port=self.kerberos_port,
            allow_any_primary=self.replication_enabled and self.allow_any_primary,
            default_storage_location=self.default_storage_location if self.allow_any_primary else "",
        )

    @property
    def uses_certificate(self) -> bool:
        return self.authentication != "Kerberos"


def desired_from(inputs: Mapping[str, Any]) -> Desired:
    cert = inputs.get("certificate") or {}
    pfx = base64.b64decode(cert["pfx_base64"]) if cert.get("pfx_base64") else None
    thumb = pki.normalise_thumbprint(cert.get("thumbprint") or "")
    if pfx is not None and cert.get("thumbprint") is None:
        thumb = pki.thumbprint(pki.load_pfx(pfx, cert.get("pfx_password") or "").certificate)
    return Desired(
        authentication=inputs.get("authentication") or "Certificate",
        certificate_pfx=pfx,
        certificate_password=cert.get("pfx_password"),
        certificate_thumbprint=thumb,
        trusted_ca_pems=tuple(inputs.get("trusted_ca_certs") or ()),
        disable_revocation_check=bool(inputs.get("disable_revocation_check")),
        certificate_port=int(inputs.get("certificate_port") or DEFAULT_CERTIFICATE_PORT),
        kerberos_port=int(inputs.get("kerberos_port") or DEFAULT_KERBEROS_PORT),
        replication_enabled=inputs.get("replication_enabled") is not False,
        allow_any_primary=bool(inputs.get("allow_any_primary")),
        default_storage_location=inputs.get("default_storage_location") or "",
        entries=tuple(
            hv.AuthorizationEntry(
                e["primary_server"], e["storage_location"], e.get("trust_group") or hv.DEFAULT_TRUST_GROUP
            )
            for e in inputs.get("allowed_primaries") or ()
        ),
        open_firewall=inputs.get("open_firewall") is not False,
        hosts_entries={k.lower(): v for k, v in (inputs.get("hosts_entries") or {}).items()},
        restart_vmms_on_revocation_change=inputs.get("restart_vmms_on_revocation_change") is True,
    )


def ca_thumbprints(pems: Sequence[str]) -> list[str]:
    return [pki.thumbprint(c) for pem in pems for c in pki.load_certificates(pem, "trusted CA certificate")]


# ------------------------------------------------------------------------------------------ what we did


@dataclass
class Managed:
    """What this resource changed on the host (so delete undoes exactly that)."""

    ca_thumbprints: list[str] = field(default_factory=list)
    certificate_thumbprints: list[str] = field(default_factory=list)
    revocation_value_set: bool = False
    revocation_value_prior: int | None = None
    replication_key_created: bool = False  # the Virtualization\Replication key did not exist before
    failover_revocation_value_set: bool = False  # the same three for Virtualization\FailoverReplication
    failover_revocation_value_prior: int | None = None
    failover_key_created: bool = False
    firewall_rules: list[str] = field(default_factory=list)  # stock rules this resource enabled
    created_firewall_rules: list[str] = field(default_factory=list)  # listener rules this resource created
    entries: list[str] = field(default_factory=list)
    server_prior: dict[str, Any] | None = None

    @classmethod
    def from_output(cls, raw: Any) -> Managed:
        """From stored outputs, where the engine turned every integer into a float."""
        known = {k: v for k, v in (raw or {}).items() if k in cls.__dataclass_fields__}
        ports = {"certificate_port": int, "kerberos_port": int}
        kinds = {"revocation_value_prior": int, "failover_revocation_value_prior": int, "server_prior": ports}
        return cls(**normalise_ints(known, kinds))

    @classmethod
    def from_ledger(cls, values: Mapping[str, str]) -> Managed:
        """From the host's ledger (see `to_ledger`)."""
        managed = cls()
        for name, data in values.items():
            attr = _LEDGER_LISTS.get(name.split(".", 1)[0])
            if attr is not None:
                _append_new(getattr(managed, attr), data)
        try:
            for site in _REVOCATION_SITES:
                if site.ledger_prior in values:
                    setattr(managed, site.set_field, True)
                    setattr(managed, site.prior_field, json.loads(values[site.ledger_prior]))
                setattr(managed, site.created_field, site.ledger_created in values)
            if _LEDGER_SERVER_PRIOR in values:
                managed.server_prior = json.loads(values[_LEDGER_SERVER_PRIOR])
        except ValueError:
            raise ValueError(
                f"the hvreplica ledger {LEDGER} on the host holds a value that is not valid JSON; "
                "it was edited by hand: restore it, or remove the key to let hvreplica forget what it changed"
            ) from None
        return managed

    def to_ledger(self) -> dict[str, str]:
        """Registry String values, one per owned item (the value name says what, the data is the item), plus
        the prior revocation value and replica-server settings as JSON."""
        values = {
            win.ledger_value_name(kind, item): item
            for kind, attr in _LEDGER_LISTS.items()
            for item in getattr(self, attr)
        }
        for site in _REVOCATION_SITES:
            if getattr(self, site.set_field):
                values[site.ledger_prior] = json.dumps(getattr(self, site.prior_field))
            if getattr(self, site.created_field):
                values[site.ledger_created] = "true"
        if self.server_prior is not None:
            values[_LEDGER_SERVER_PRIOR] = json.dumps(self.server_prior, sort_keys=True)
        return values

    def merged(self, host: Managed) -> Managed:
        """These records (from stored outputs) together with the host's ledger; the host's priors win."""
        out = copy.deepcopy(self)
        for attr in _LEDGER_LISTS.values():
            for item in getattr(host, attr):
                _append_new(getattr(out, attr), item)
        for site in _REVOCATION_SITES:
            if getattr(host, site.set_field):
                setattr(out, site.set_field, True)
                setattr(out, site.prior_field, getattr(host, site.prior_field))
            created = getattr(self, site.created_field) or getattr(host, site.created_field)
            setattr(out, site.created_field, created)
        if host.server_prior is not None:
            out.server_prior = host.server_prior
        return out


def _append_new(items: list[str], value: str) -> None:
    if value not in items:
        items.append(value)


# ------------------------------------------------------------------------------------------ reconcile


def reconcile(
    session: Session,
    desired: Desired,
    state: HostState,
    managed: Managed,
    keep_cas: frozenset[str] = frozenset(),
) -> None:
    """Bring the host to `desired`, touching only what differs; record changes in `managed` and, in the same
    invocations and ahead of the changes, in the host's ledger. `keep_cas`: thumbprints of CAs the previous
    apply still listed, kept one more apply (see `_retire_statements`)."""
    _install_certificates(session, desired, state, managed)
    statements = settings_statements(desired, state, managed, keep_cas)
    if not statements:
        return
    revocation_changes = _revocation_differs(desired, state)
    writes, drops = win.ledger_change_cmds(LEDGER, state.ledger.values, managed.to_ledger())
    try:
        session.run(*writes, *statements, *drops).raise_errors()
    except RemoteError:
        # A retried invocation whose first reply was lost re-runs statements that already took effect
        # (New-Item on the key it created, ...). Settled when the host now needs nothing more.
        if settings_statements(desired, read_host(session), copy.deepcopy(managed), keep_cas):
            raise
    if revocation_changes:
        _restart_vmms(session, desired, state)


# Replication states in which a VMMS restart would abort a transfer under way.
_TRANSFERRING = ("InitialReplicationInProgress", "Resynchronizing")


def _revocation_differs(desired: Desired, state: HostState) -> bool:
    wanted = 1 if desired.disable_revocation_check else 0
    return any((setting.value or 0) != wanted for setting in state.revocation.values())


def _restart_vmms(session: Session, desired: Desired, state: HostState) -> None:
    """VMMS may read DisableCertRevocationCheck only when it starts (not documented either way). On request
    (`restart_vmms_on_revocation_change`), restart it once the value changed, unless a replication on the
    host is transferring an initial copy or a resynchronization, which the restart would abort; otherwise
    say what to do. Running VMs and the WinRM session are not affected by a VMMS restart."""
    host = session.host
    busy = sorted(r.vm_name for r in state.replications if r.state in _TRANSFERRING)
    if not desired.restart_vmms_on_revocation_change:
        pulumi.log.warn(
            f"ReplicaServer {host}: DisableCertRevocationCheck changed; if VMMS does not pick it up, restart "
            "it (Restart-Service vmms) or set restart_vmms_on_revocation_change"
        )
    elif busy:
        pulumi.log.warn(
            f"ReplicaServer {host}: DisableCertRevocationCheck changed but VMMS was NOT restarted: "
            f"replication of {', '.join(busy)} is transferring; restart it (Restart-Service vmms) once done"
        )
    else:
        session.run([cmd("Restart-Service", Name="vmms", Force=True, ErrorAction="Stop")])


def settings_statements(
    desired: Desired, state: HostState, managed: Managed, keep_cas: frozenset[str] = frozenset()
) -> list[Statement]:
    """Registry, firewall, hosts file, server settings and entries, then the retirement of certificates and
    CAs no longer wanted: what differs, in that order."""
    statements: list[Statement] = []
    statements += _registry_statements(desired, state, managed)
    statements += _firewall_statements(desired, state, managed)
    wanted_hosts = win.render_hosts(state.hosts_lines, desired.hosts_entries)
    if wanted_hosts != state.hosts_lines:
        statements.append(win.hosts_write_cmd(wanted_hosts))
    statements += _server_statements(desired, state, managed)
    statements += _retire_statements(desired, state, managed, keep_cas)
    return statements


def _retire_statements(
    desired: Desired, state: HostState, managed: Managed, keep_cas: frozenset[str]
) -> list[Statement]:
    """Remove what this resource installed and no longer wants, once nothing needs it (after a rotation):
    - an old host certificate, when no VM replication on the host authenticates with it any more (they
      switch to the new one after this resource, so that can take until the next apply);
    - a CA `trusted_ca_certs` no longer lists, when none of our old host certificates is left (one might
      chain to it) and the previous apply did not list it either (`keep_cas`): by then every partner has
      had a whole apply to switch to certificates of its new CA.
    Runs after `_server_statements`, which switches the server to the new certificate first."""
    out: list[Statement] = []
    current = desired.certificate_thumbprint if desired.uses_certificate else ""
    in_use = {current} | {r.settings.certificate_thumbprint for r in state.replications}
    my, root = state.thumbprints(win.MY_STORE), state.thumbprints(win.ROOT_STORE)
    for thumb in [t for t in managed.certificate_thumbprints if t not in in_use]:
        if thumb in my:
            out.append(win.remove_certificate_cmd(win.MY_STORE, thumb))
        managed.certificate_thumbprints.remove(thumb)
    if any(t != current for t in managed.certificate_thumbprints):
        return out
    listed = set(ca_thumbprints(desired.trusted_ca_pems)) | keep_cas
    for thumb in [t for t in managed.ca_thumbprints if t not in listed]:
        if thumb in root:
            out.append(win.remove_certificate_cmd(win.ROOT_STORE, thumb))
        managed.ca_thumbprints.remove(thumb)
    return out


def _install_certificates(session: Session, desired: Desired, state: HostState, managed: Managed) -> None:
    root = state.thumbprints(win.ROOT_STORE)
    missing_cas = [pem for pem in desired.trusted_ca_pems if not set(ca_thumbprints([pem])) <= root]
    need_pfx = (
        desired.uses_certificate
        and desired.certificate_pfx is not None
        and desired.certificate_thumbprint not in state.thumbprints(win.MY_STORE)
    )
    if not missing_cas and not need_pfx:
        return
    for thumb in ca_thumbprints(missing_cas):
        if thumb not in root:
            _append_new(managed.ca_thumbprints, thumb)
    if need_pfx:
        _append_new(managed.certificate_thumbprints, desired.certificate_thumbprint)
    writes, _ = win.ledger_change_cmds(LEDGER, state.ledger.values, managed.to_ledger())
    win.install_certificates(
        session,
        ca_pems=missing_cas,
        pfx=desired.certificate_pfx if need_pfx else None,
        pfx_password=desired.certificate_password,
        first=writes,
    )
    state.ledger.values = managed.to_ledger()  # what the host's ledger now holds


def _registry_statements(desired: Desired, state: HostState, managed: Managed) -> list[Statement]:
    wanted = 1 if desired.disable_revocation_check else 0
    out: list[Statement] = []
    for site in _REVOCATION_SITES:
        current = state.revocation[site.key]
        if (current.value or 0) == wanted:  # an absent value means 0: revocation is checked
            continue
        if not getattr(managed, site.set_field):
            setattr(managed, site.set_field, True)
            setattr(managed, site.prior_field, current.value)
        if wanted == 0 and getattr(managed, site.prior_field) is None:
            out.append(win.remove_value_cmd(site.key, win.REVOCATION_VALUE))
            continue
        if current.key is None:
            setattr(managed, site.created_field, True)
        out += win.set_dword_cmds(site.key, win.REVOCATION_VALUE, wanted, key_exists=current.key is not None)
    return out


def _firewall_statements(desired: Desired, state: HostState, managed: Managed) -> list[Statement]:
    wanted = {r.name: r for r in desired.listener_rules} if desired.open_firewall else {}
    # A listener rule this resource created for a port no longer in use (changed, or the firewall is to stay
    # closed) goes before its replacement is made.
    out = [
        win.remove_firewall_rule_cmd(n)
        for n in managed.created_firewall_rules
        if n not in wanted and n in state.firewall
    ]
    managed.created_firewall_rules = [n for n in managed.created_firewall_rules if n in wanted]
    if not desired.open_firewall:
        # Close only what this resource opened; a rule opened by someone else stays as it is.
        closing = [n for n in managed.firewall_rules if n in state.firewall and state.firewall[n].enabled]
        managed.firewall_rules = [n for n in managed.firewall_rules if n not in closing]
        return out + [win.set_firewall_rule_cmd(n, False) for n in closing]
    for name in desired.firewall_rules:
        rule = state.firewall.get(name)
        if rule is None:
            raise NotFound(
                f"firewall rule {name} does not exist; is the Hyper-V role installed?",
                cmdlet="Get-NetFirewallRule",
            )
        if not rule.enabled:
            out.append(win.set_firewall_rule_cmd(name, True))
            _append_new(managed.firewall_rules, name)
    for name, listener in wanted.items():
        rule = state.firewall.get(name)
        if rule is None:
            out.append(win.new_listener_rule_cmd(listener))
            _append_new(managed.created_firewall_rules, name)
        elif not rule.enabled:
            out.append(win.set_firewall_rule_cmd(name, True))
            if name not in managed.created_firewall_rules:
                _append_new(managed.firewall_rules, name)
    return out


def _server_statements(desired: Desired, state: HostState, managed: Managed) -> list[Statement]:
    out: list[Statement] = []
    wanted = desired.server()
    if wanted != state.server:
        if managed.server_prior is None:
            managed.server_prior = asdict(state.server)
        out.append(hv.set_server_cmd(wanted))
    if desired.replication_enabled and not desired.allow_any_primary:
        out += hv.entry_cmds(state.entries, desired.entries, remove_unlisted=managed.entries)
        present = {e.key for e in state.entries}
        wanted_keys = [e.key for e in desired.entries]
        managed.entries = [k for k in wanted_keys if k in managed.entries or k not in present]
    return out


def undo(session: Session, state: HostState, managed: Managed) -> None:
    """Undo what `managed` records, leaving everything else alone. Idempotent."""
    statements: list[Statement] = []
    present = {e.key: e for e in state.entries}
    statements += [
        [
            cmd(
                "Remove-VMReplicationAuthorizationEntry",
                AllowedPrimaryServer=present[k].allowed_primary_server,
                ErrorAction="Stop",
            )
        ]
        for k in managed.entries
        if k in present
    ]
    if managed.server_prior is not None:
        prior = hv.ReplicationServerSettings(**managed.server_prior)
        if prior != state.server:
            statements.append(hv.set_server_cmd(prior))
    statements += [
        win.set_firewall_rule_cmd(n, False)
        for n in managed.firewall_rules
        if n in state.firewall and state.firewall[n].enabled and n not in managed.created_firewall_rules
    ]
    statements += [
        win.remove_firewall_rule_cmd(n) for n in managed.created_firewall_rules if n in state.firewall
    ]
    cleaned_hosts = win.render_hosts(state.hosts_lines, {})
    if cleaned_hosts != state.hosts_lines:
        statements.append(win.hosts_write_cmd(cleaned_hosts))
    statements += _registry_undo(state, managed)
    # What stays ours: a certificate a VM replication still authenticates with, and while any replication
    # is left, the CAs (one may verify that replication's partner).
    kept = Managed()
    in_use = {r.settings.certificate_thumbprint for r in state.replications}
    my, root = state.thumbprints(win.MY_STORE), state.thumbprints(win.ROOT_STORE)
    for thumb in managed.certificate_thumbprints:
        if thumb in in_use:
            kept.certificate_thumbprints.append(thumb)
        elif thumb in my:
            statements.append(win.remove_certificate_cmd(win.MY_STORE, thumb))
    for thumb in managed.ca_thumbprints:
        if state.replications:
            kept.ca_thumbprints.append(thumb)
        elif thumb in root:
            statements.append(win.remove_certificate_cmd(win.ROOT_STORE, thumb))
    # The ledger changes last: when an undo step fails, the next delete still finds everything that is ours.
    remaining = kept.to_ledger()
    if remaining:
        writes, drops = win.ledger_change_cmds(LEDGER, state.ledger.values, remaining)
        statements += [*writes, *drops]
    else:
        statements += win.ledger_remove_cmds(state.ledger)
    if statements:
        session.run(*statements).raise_errors()


def _registry_undo(state: HostState, managed: Managed) -> list[Statement]:
    out: list[Statement] = []
    for site in _REVOCATION_SITES:
        current, prior = state.revocation[site.key], getattr(managed, site.prior_field)
        key = current.key
        if key is None or not getattr(managed, site.set_field):
            continue
        if (
            getattr(managed, site.created_field)
            and key.subkeys == 0
            and key.value_names <= {win.REVOCATION_VALUE}
            and prior is None
        ):
            # The key exists only because of us and holds nothing else: it goes as a whole.
            out.append(win.remove_key_cmd(site.key))
        elif current.value == prior:
            continue
        elif prior is None:
            out.append(win.remove_value_cmd(site.key, win.REVOCATION_VALUE))
        else:
            out += win.set_dword_cmds(site.key, win.REVOCATION_VALUE, prior, key_exists=True)
    return out


# ------------------------------------------------------------------------------------------ outputs


def observed(inputs: Mapping[str, Any], state: HostState, managed: Managed) -> dict[str, Any]:
    """Outputs: the inputs as the host shows them (so refresh reveals drift) plus what was read."""
    desired = desired_from(inputs)
    root = state.thumbprints(win.ROOT_STORE)
    server = state.server
    my = state.thumbprints(win.MY_STORE)
    cert = dict(inputs.get("certificate") or {})
    if cert and desired.uses_certificate:
        installed = desired.certificate_thumbprint in my
        in_use = (
            server.certificate_thumbprint if server.replication_enabled else desired.certificate_thumbprint
        )
        cert["thumbprint"] = in_use if installed else ""
    relevant = {e.key for e in desired.entries} | set(managed.entries)
    entries = [e for e in state.entries if e.key in relevant]
    as_read = {
        **inputs,
        "trusted_ca_certs": [pem for pem in desired.trusted_ca_pems if set(ca_thumbprints([pem])) <= root],
        "disable_revocation_check": state.revocation_check_disabled,
        "authentication": server.authentication or desired.authentication,
        "certificate_port": server.certificate_port,
        "kerberos_port": server.kerberos_port,
        "replication_enabled": server.replication_enabled,
        "allow_any_primary": server.allow_any_primary,
        "default_storage_location": server.default_storage_location or inputs.get("default_storage_location"),
        "allowed_primaries": [
            {
                "primary_server": e.allowed_primary_server,
                "storage_location": e.storage_location,
                "trust_group": e.trust_group,
            }
            for e in entries
        ],
        "open_firewall": _firewall_open(desired, state),
        "hosts_entries": win.parse_managed_block(state.hosts_lines),
    }
    if cert:
        as_read["certificate"] = cert
    return {
        **as_read,
        "server": asdict(server),
        "authorization_entries": [asdict(e) for e in state.entries],
        "revocation_check_disabled": state.revocation_check_disabled,
        "firewall_rules": {n: r.enabled for n, r in state.firewall.items()},
        "certificate_thumbprint": server.certificate_thumbprint,
        "managed": asdict(managed),
    }


def _firewall_open(desired: Desired, state: HostState) -> bool:
    names = [*desired.firewall_rules, *(r.name for r in desired.listener_rules)]
    if not names:
        return desired.open_firewall
    return all(n in state.firewall and state.firewall[n].enabled for n in names)


def _comparable(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs with defaults filled so that absent and default compare equal."""
    d = desired_from(inputs)
    return {
        "certificate": d.certificate_thumbprint if d.uses_certificate else "",
        "trusted_ca_certs": sorted(ca_thumbprints(d.trusted_ca_pems)),
        "disable_revocation_check": d.disable_revocation_check,
        "authentication": d.authentication,
        "certificate_port": d.certificate_port,
        "kerberos_port": d.kerberos_port,
        "replication_enabled": d.replication_enabled,
        "allowed_primaries": sorted((e.key, e.storage_location, e.trust_group) for e in d.entries)
        if d.replication_enabled and not d.allow_any_primary
        else [],
        "allow_any_primary": d.allow_any_primary and d.replication_enabled,
        "default_storage_location": d.default_storage_location if d.allow_any_primary else "",
        "open_firewall": d.open_firewall,
        "hosts_entries": d.hosts_entries,
    }


def _identity(conn: Any) -> tuple[str, int]:
    c = HostConnection.from_input(conn)
    return c.host.lower(), c.effective_port


# ------------------------------------------------------------------------------------------ provider


class ReplicaServerProvider(ResourceProvider):
    """Dynamic provider of `ReplicaServer` (stateless, pickled by reference)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        checked = CheckFailures(news, secret_keys=("certificate", "connection"))
        check_connection(checked, "connection", "ReplicaServer")
        fqdn = checked.string("fqdn", required=True, problem=pki.dns_name_problem)
        auth = checked.choice("authentication", hv.SERVER_AUTHENTICATIONS, default="Certificate")
        cert_port = checked.integer(
            "certificate_port", default=DEFAULT_CERTIFICATE_PORT, minimum=1, maximum=65535
        )
        kerb_port = checked.integer("kerberos_port", default=DEFAULT_KERBEROS_PORT, minimum=1, maximum=65535)
        if auth == "CertificateAndKerberos" and cert_port is not None and cert_port == kerb_port:
            checked.add("kerberos_port", "kerberos_port and certificate_port must differ when both are used")
        cas = checked.string_list("trusted_ca_certs", problem=_ca_problem, text=True)
        partner_cas = checked.string_list("partner_trusted_ca_certs", problem=_ca_problem, text=True)
        revocation_off = checked.boolean("disable_revocation_check", default=False)
        enabled = checked.boolean("replication_enabled", default=True)
        any_primary = checked.boolean("allow_any_primary", default=False)
        checked.boolean("open_firewall", default=True)  # custom ports get listener rules of their own
        checked.boolean("restart_vmms_on_revocation_change", default=False)
        _check_entries(checked, any_primary, enabled)
        _check_hosts_entries(checked)
        if auth is not None and auth != "Kerberos":
            _check_certificate(checked, fqdn, cas, partner_cas, revocation_off)
        elif auth == "Kerberos" and checked.inputs.get("certificate") is not None:
            checked.add(
                "certificate",
                "authentication 'Kerberos' uses no certificate, so none is installed; remove certificate "
                "or use 'CertificateAndKerberos'",
            )
        return checked.result()

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = []
        if contains_unknown(news.get("connection")) or _identity(olds["connection"]) != _identity(
            news["connection"]
        ):
            replaces.append("connection")
        changed = [k for k in LOCAL_KEYS if contains_unknown(news.get(k)) or olds.get(k) != news.get(k)]
        if any(contains_unknown(news.get(k)) for k in HOST_KEYS):
            changed.append("host settings")
        else:
            old_c, new_c = _comparable(olds), _comparable(news)
            changed += [k for k in HOST_KEYS if old_c[k] != new_c[k]]
            if _pending_retirement(olds, news):
                changed.append("managed")
        return DiffResult(changes=bool(replaces or changed), replaces=replaces, delete_before_replace=True)

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = user_properties(props)
        session = _session(inputs)
        state = read_host(session)
        # A re-run after a create that failed half-way adopts what that attempt recorded on the host.
        managed = Managed.from_ledger(state.ledger.values)
        reconcile(session, desired_from(inputs), state, managed)
        outputs = observed(inputs, read_host(session), managed)
        return CreateResult(f"{_identity(inputs['connection'])[0]}/replica-server", outputs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        outputs = user_properties(props)
        if "connection" not in outputs:
            raise ValueError(f"ReplicaServer {id_!r}: import is not supported; declare it and run pulumi up")
        inputs = {k: v for k, v in outputs.items() if k not in COMPUTED_KEYS}
        state = read_host(_session(inputs))
        fresh = observed(inputs, state, _managed(outputs, state))
        return ReadResult(id_, fresh, {k: v for k, v in fresh.items() if k not in COMPUTED_KEYS})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = user_properties(news)
        if _comparable(olds) == _comparable(inputs) and not _pending_retirement(olds, inputs):
            # Only provider-side settings (credentials, fqdn, partner CAs) changed: no host is touched.
            return UpdateResult({**inputs, **{k: olds.get(k) for k in COMPUTED_KEYS}})
        session = _session(inputs)
        state = read_host(session)
        managed = _managed(olds, state)
        keep_cas = frozenset(ca_thumbprints(olds.get("trusted_ca_certs") or ()))
        reconcile(session, desired_from(inputs), state, managed, keep_cas)
        return UpdateResult(observed(inputs, read_host(session), managed))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        outputs = user_properties(props)
        session = _session(outputs)
        state = read_host(session)
        undo(session, state, _managed(outputs, state))


def _pending_retirement(outputs: Mapping[str, Any], inputs: Mapping[str, Any]) -> bool:
    """Whether the stored record still holds a host certificate or CA that `inputs` no longer want (kept
    by an earlier apply because something needed it): the next update retires it, so diff reports one."""
    managed = Managed.from_output(outputs.get("managed"))
    desired = desired_from(inputs)
    current = desired.certificate_thumbprint if desired.uses_certificate else ""
    return any(t != current for t in managed.certificate_thumbprints) or bool(
        set(managed.ca_thumbprints) - set(ca_thumbprints(desired.trusted_ca_pems))
    )


def _managed(outputs: Mapping[str, Any], state: HostState) -> Managed:
    """What this resource owns: the stored record together with the host's ledger."""
    return Managed.from_output(outputs.get("managed")).merged(Managed.from_ledger(state.ledger.values))


def _session(inputs: Mapping[str, Any]) -> Session:
    return Session(HostConnection.from_input(inputs["connection"]))


def _ca_problem(pem: str) -> str | None:
    try:
        certs = pki.load_certificates(pem, "the certificate")
    except ValueError as exc:
        return str(exc)
    if not all(pki.is_ca(c) for c in certs):
        return (
            "it is not a CA certificate (BasicConstraints CA:TRUE); "
            "list the CAs that issued the host certificates"
        )
    return None


def _check_entries(checked: CheckFailures, any_primary: bool | None, enabled: bool | None) -> None:
    raw = checked.inputs.get("allowed_primaries")
    checked.string("default_storage_location", problem=win.path_problem)
    if any_primary and checked.missing("default_storage_location"):
        checked.add(
            "default_storage_location",
            "allow_any_primary needs default_storage_location (an absolute "
            "path such as D:\\Replica) for the VMs of unlisted primaries",
        )
    if raw is None or contains_unknown(raw):
        checked.inputs.setdefault("allowed_primaries", [])
        return
    if not isinstance(raw, list):
        checked.add(
            "allowed_primaries",
            "allowed_primaries must be a list of {primary_server, storage_location, trust_group}",
        )
        return
    if raw and any_primary:
        checked.add(
            "allowed_primaries",
            "allowed_primaries cannot be combined with allow_any_primary: Hyper-V "
            "refuses specific entries while the '*' entry exists; use one or the other",
        )
    seen: set[str] = set()
    normalised = []
    for i, entry in enumerate(raw):
        where = f"allowed_primaries[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("primary_server"), str):
            checked.add(where, f"{where} needs primary_server (an FQDN or '*.domain') and storage_location")
            continue
        server = entry["primary_server"]
        problem = pki.dns_name_problem(server[2:] if server.startswith("*.") else server)
        if problem:
            label = checked.label(f"{where}.primary_server", server)
            checked.add(f"{where}.primary_server", f"{label}: {problem}")
        elif server.lower() in seen:
            checked.add(f"{where}.primary_server", f"{where}.primary_server {server!r} is listed twice")
        seen.add(server.lower())
        location = entry.get("storage_location")
        location_problem = (
            win.path_problem(location) if isinstance(location, str) else "storage_location must be a string"
        )
        if location_problem:
            checked.add(f"{where}.storage_location", f"{where}.storage_location: {location_problem}")
        group = entry.get("trust_group")
        group_problem = _trust_group_problem(group)
        if group_problem:
            checked.add(f"{where}.trust_group", f"{where}.trust_group: {group_problem}")
        normalised.append(
            {
                "primary_server": server,
                "storage_location": location,
                "trust_group": group or hv.DEFAULT_TRUST_GROUP,
            }
        )
    if enabled is False and raw:
        checked.add(
            "allowed_primaries",
            "allowed_primaries needs replication_enabled (a primary-only host receives no replicas)",
        )
    checked.inputs["allowed_primaries"] = normalised


def _trust_group_problem(group: object) -> str | None:
    """Absent (DEFAULT) or a plain name: it is stored in the host's authorization entries."""
    if group is None:
        return None
    if not isinstance(group, str) or not group.strip():
        return "trust_group must be a non-empty string (or left out for DEFAULT)"
    return control_problem(group) or (
        f"it is {len(group)} characters long; keep it under {_MAX_TRUST_GROUP}"
        if len(group) >= _MAX_TRUST_GROUP
        else None
    )


def _check_hosts_entries(checked: CheckFailures) -> None:
    raw = checked.inputs.get("hosts_entries")
    if raw is None:
        checked.inputs["hosts_entries"] = {}
        return
    if contains_unknown(raw):
        return
    if not isinstance(raw, Mapping):
        checked.add("hosts_entries", "hosts_entries must map FQDNs to IP addresses")
        return
    seen: set[str] = set()
    for name, address in raw.items():
        problem = pki.dns_name_problem(name)
        if problem:
            checked.add("hosts_entries", f"{checked.label('hosts_entries key', name)}: {problem}")
            continue
        if name.lower() in seen:
            checked.add("hosts_entries", f"hosts_entries names {name!r} twice (names are case-insensitive)")
        seen.add(name.lower())
        if not _is_ip_address(address):
            checked.add(
                "hosts_entries",
                f"hosts_entries[{name!r}] must be an IPv4 or IPv6 address such as 10.0.0.12 "
                "(a string, without zone id)",
            )


def _is_ip_address(value: object) -> bool:
    """A plain address string: ipaddress also takes ints, and IPv6 zone ids (`%...`) of any text."""
    if not isinstance(value, str) or "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _check_certificate(
    checked: CheckFailures,
    fqdn: str | None,
    cas: list[str] | None,
    partner_cas: list[str] | None,
    revocation_off: bool | None,
) -> None:
    raw = checked.inputs.get("certificate")
    if raw is None:
        checked.add(
            "certificate",
            "certificate authentication needs certificate {pfx_base64, pfx_password, "
            "thumbprint} (for example a HostCertificate's outputs)",
        )
        return
    if contains_unknown(raw):
        return
    strings = ("pfx_base64", "pfx_password", "thumbprint")
    if (
        not isinstance(raw, Mapping)
        or not raw.get("pfx_base64")
        or any(raw.get(k) is not None and not isinstance(raw.get(k), str) for k in strings)
    ):
        checked.add("certificate", "certificate must hold pfx_base64, pfx_password and thumbprint as strings")
        return
    try:
        pfx = pki.load_pfx(base64.b64decode(raw["pfx_base64"], validate=True), raw.get("pfx_password") or "")
    except (ValueError, binascii.Error) as exc:
        checked.add("certificate", f"certificate.pfx_base64: {exc}; check pfx_base64 and pfx_password")
        return
    cert = pfx.certificate
    thumb = pki.thumbprint(cert)
    given = pki.normalise_thumbprint(raw.get("thumbprint") or "")
    if given and given != thumb:
        checked.add(
            "certificate", f"certificate.thumbprint {given} does not match the PFX's certificate ({thumb})"
        )
    if pfx.private_key is None:
        checked.add(
            "certificate", "the PFX holds no private key; Hyper-V Replica needs the key in LocalMachine\\My"
        )
    if fqdn and not pki.covers_dns_name(cert, fqdn):
        names = pki.dns_names(cert) or [pki.common_name(cert) or "no name"]
        checked.add(
            "certificate",
            f"the certificate does not cover fqdn {fqdn!r}: it is for {', '.join(names)} (with a subject "
            "alternative name, only its DNS names count, not the CN: RFC 6125, and Hyper-V fails with "
            "0x800B010F); issue it for the exact name partners use",
        )
    missing = pki.missing_ekus(cert)
    if missing:
        checked.add(
            "certificate",
            f"the certificate lacks the {' and '.join(missing)} EKU; Hyper-V Replica "
            "needs both Server and Client Authentication",
        )
    problem = pki.validity_problem(cert, clock.now())
    if problem:
        checked.add("certificate", f"the certificate {problem}; issue a new one")
    anchors, which = (partner_cas, "partner_trusted_ca_certs") if partner_cas else (cas, "trusted_ca_certs")
    if anchors and not pki.issued_by_any(cert, anchors):
        checked.add(
            "certificate",
            f"the certificate is not signed by any CA in {which}; the partner will not "
            "trust it: add its issuing CA there (self-signed host certificates do not work)",
        )
    if revocation_off is False and not pki.has_crl_distribution_point(cert):
        checked.add(
            "disable_revocation_check",
            "the certificate has no CRL distribution point, so Hyper-V's revocation check fails; set "
            "disable_revocation_check: true (usual for a private CA) or issue it with a reachable CRL",
        )
    checked.inputs["certificate"] = {**raw, "thumbprint": thumb}


# ------------------------------------------------------------------------------------------ resource


@dataclass
class ReplicaServerArgs:
    """Inputs of `ReplicaServer`: the replication side of one Hyper-V host (trusted CAs, certificate,
    revocation check, firewall, hosts file, replica-server settings and authorization entries)."""

    connection: pulumi.Input[HostConnectionArgs]
    """How to reach the host over WinRM; only a change of `host`/`port` replaces the resource."""
    fqdn: pulumi.Input[str]
    """The name partners use for this host; the certificate must cover it."""
    certificate: pulumi.Input[ReplicaServerCertificateArgs] | None = None
    """The host certificate to install (required for certificate authentication). Secret. A change is
    a rotation: the new one is installed first, the old one removed once no replication uses it."""
    trusted_ca_certs: pulumi.Input[Sequence[pulumi.Input[str]]] | None = None
    """PEMs of the own and the partners' CAs, for `LocalMachine\\Root`."""
    partner_trusted_ca_certs: pulumi.Input[Sequence[pulumi.Input[str]]] | None = None
    """Checked only: the CAs the partners trust; a certificate none of them signed is refused."""
    disable_revocation_check: pulumi.Input[bool] | None = None
    """Sets `DisableCertRevocationCheck` = 1 (default false); needed for a CA that publishes no CRL."""
    restart_vmms_on_revocation_change: pulumi.Input[bool] | None = None
    """Restart the `vmms` service after `DisableCertRevocationCheck` changed (default false: only a warning),
    unless a replication on the host is transferring an initial copy or a resynchronization."""
    authentication: pulumi.Input[ReplicaServerAuthentication] | None = None
    """`Certificate` (default), `Kerberos` or `CertificateAndKerberos`."""
    certificate_port: pulumi.Input[int] | None = None
    """HTTPS port of the replication listener (default 443)."""
    kerberos_port: pulumi.Input[int] | None = None
    """HTTP port for Kerberos (default 80)."""
    replication_enabled: pulumi.Input[bool] | None = None
    """True (default) makes the host a replica server; false prepares a primary-only host."""
    allowed_primaries: pulumi.Input[Sequence[pulumi.Input[AllowedPrimaryArgs]]] | None = None
    """Authorization entries: which primaries may replicate here, and where their replicas go."""
    allow_any_primary: pulumi.Input[bool] | None = None
    """Accept any authenticated primary instead of `allowed_primaries` (default false)."""
    default_storage_location: pulumi.Input[str] | None = None
    """Where replicas go with `allow_any_primary`."""
    open_firewall: pulumi.Input[bool] | None = None
    """Enable the listener's inbound firewall rule (default true)."""
    hosts_entries: pulumi.Input[Mapping[str, pulumi.Input[str]]] | None = None
    """FQDN -> IP in a marked block of the hosts file (other lines stay), so partners in other domains
    resolve."""


class ReplicaServer(Resource, module="hvreplica", name="ReplicaServer"):
    """Hyper-V Replica server settings of one host, with its certificates, firewall and names."""

    server: pulumi.Output[dict]
    authorization_entries: pulumi.Output[list]
    revocation_check_disabled: pulumi.Output[bool]
    firewall_rules: pulumi.Output[dict]
    certificate_thumbprint: pulumi.Output[str]
    managed: pulumi.Output[dict]

    def __init__(
        self, resource_name: str, args: ReplicaServerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            ReplicaServerProvider(),
            resource_name,
            secret_inputs(args_props(args, COMPUTED_KEYS), SECRET_INPUTS),
            opts,
        )
