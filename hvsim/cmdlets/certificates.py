"""The Certificate provider (Cert:\\LocalMachine\\My, \\Root, \\CA) and the PKI import cmdlets.

Certificates come out as X509Certificate2 objects the way Windows PowerShell 5.1 serialises them at the
remoting depth: the .NET properties adapted (nested objects as their ToString), the provider's PS* notes and
the script properties of its type data (EnhancedKeyUsageList, DnsNameList, ...) extended.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any, NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from psrpcore.types import ErrorCategory, PSByteArray, PSList

from hvsim.cmdlets.base import (
    SECURE_STRING,
    STRING,
    SWITCH,
    BoundArguments,
    CmdletContext,
    Param,
    cmdlet,
)
from hvsim.cmdlets.errors import TerminatingError, register_exception
from hvsim.cmdlets.files import (
    FILESYSTEM,
    ItemPath,
    PathError,
    current_location,
    item_properties,
    not_found,
    path_error,
    register_provider,
    resolve_path,
)
from hvsim.cmdlets.objects import datetime_value, define_enum, dotnet_object, i32
from hvsim.network import certificate_names
from hvsim.windows import CERT_STORES, Host, StoredCertificate

_PKI = "Microsoft.CertificateServices.Commands"
LOCATION = "LocalMachine"
X509_CERTIFICATE2_TN = (
    "System.Security.Cryptography.X509Certificates.X509Certificate2",
    "System.Security.Cryptography.X509Certificates.X509Certificate",
)
_X509_STORE_TN = ("System.Security.Cryptography.X509Certificates.X509Store",)
_STORE_LOCATION_TN = ("Microsoft.PowerShell.Commands.X509StoreLocation",)
StoreLocation = define_enum(
    "System.Security.Cryptography.X509Certificates.StoreLocation", {"CurrentUser": 1, "LocalMachine": 2}
)
register_exception("System.ComponentModel.Win32Exception", "System.Runtime.InteropServices.ExternalException")

# CryptoAPI's friendly names for the usages PowerShell lists in EnhancedKeyUsageList.
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH.dotted_string: "Server Authentication",
    ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string: "Client Authentication",
    ExtendedKeyUsageOID.CODE_SIGNING.dotted_string: "Code Signing",
    ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string: "Secure Email",
    ExtendedKeyUsageOID.TIME_STAMPING.dotted_string: "Time Stamping",
    ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string: "OCSP Signing",
}
# X500DistinguishedName's attribute labels.
_RDN_LABELS = {
    NameOID.COMMON_NAME: "CN",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "S",
    NameOID.COUNTRY_NAME: "C",
    NameOID.EMAIL_ADDRESS: "E",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.STREET_ADDRESS: "STREET",
    NameOID.SERIAL_NUMBER: "SERIALNUMBER",
    NameOID.GIVEN_NAME: "G",
    NameOID.SURNAME: "SN",
    NameOID.TITLE: "T",
}


def windows_name(name: x509.Name) -> str:
    """A distinguished name as .NET prints it: most specific RDN first, ", " between, quoted when needed."""
    parts = []
    for rdn in reversed(name.rdns):
        for attr in rdn:
            label = _RDN_LABELS.get(attr.oid, f"OID.{attr.oid.dotted_string}")
            value = str(attr.value)
            if any(c in value for c in ',+="\n<>#;') or value != value.strip():
                value = '"' + value.replace('"', '""') + '"'
            parts.append(f"{label}={value}")
    return ", ".join(parts)


def serial_number_hex(cert: x509.Certificate) -> str:
    """SerialNumber as .NET shows it: the DER integer's bytes (with a leading 00 when the high bit is set)."""
    n = cert.serial_number
    return n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True).hex().upper()


def eku_list(cert: x509.Certificate) -> list[str]:
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return []
    return [f"{_EKU_NAMES.get(oid.dotted_string, '')} ({oid.dotted_string})" for oid in usages]


def _typed_list(type_name: str, items: list[str]) -> Any:
    """A generic List of representation objects; at the remoting depth its items arrive as their ToString."""
    value = PSList(items)
    value.PSObject.type_names = [type_name, "System.Object"]
    return value


_GENERIC_LIST = (
    "System.Collections.Generic.List`1[[{0}, Microsoft.PowerShell.Security, Version=3.0.0.0, "
    "Culture=neutral, PublicKeyToken=31bf3856ad364e35]]"
)


def certificate_object(stored: StoredCertificate, store: str) -> Any:
    """X509Certificate2 as Get-ChildItem Cert:\\LocalMachine\\<store> returns it."""
    cert = stored.cert
    thumbprint = stored.thumbprint
    adapted = {
        "Archived": False,
        "Extensions": "System.Security.Cryptography.X509Certificates.X509ExtensionCollection",
        "FriendlyName": stored.friendly_name,
        "IssuerName": "System.Security.Cryptography.X509Certificates.X500DistinguishedName",
        "NotAfter": datetime_value(cert.not_valid_after_utc),
        "NotBefore": datetime_value(cert.not_valid_before_utc),
        "HasPrivateKey": stored.has_private_key,
        "PrivateKey": "System.Security.Cryptography.RSACryptoServiceProvider"
        if stored.has_private_key
        else None,
        "PublicKey": "System.Security.Cryptography.X509Certificates.PublicKey",
        "RawData": PSByteArray(stored.der),
        "SerialNumber": serial_number_hex(cert),
        "SubjectName": "System.Security.Cryptography.X509Certificates.X500DistinguishedName",
        "SignatureAlgorithm": "System.Security.Cryptography.Oid",
        "Thumbprint": thumbprint,
        "Version": i32(cert.version.value + 1),
        "Handle": str(int(hashlib.sha256(stored.der).hexdigest()[:12], 16)),
        "Issuer": windows_name(cert.issuer),
        "Subject": windows_name(cert.subject),
    }
    extended = {
        **item_properties(CERTIFICATES, f"{LOCATION}\\{store}\\{thumbprint}", False),
        "EnhancedKeyUsageList": _typed_list(
            _GENERIC_LIST.format("Microsoft.PowerShell.Commands.EnhancedKeyUsageRepresentation"),
            eku_list(cert),
        ),
        "DnsNameList": _typed_list(
            _GENERIC_LIST.format("Microsoft.PowerShell.Commands.DnsNameRepresentation"),
            certificate_names(cert),
        ),
        "SendAsTrustedIssuer": False,
        "EnrollmentPolicyEndPoint": "Microsoft.CertificateServices.Commands.EnrollmentEndPointProperty",
        "EnrollmentServerEndPoint": "Microsoft.CertificateServices.Commands.EnrollmentEndPointProperty",
        "PolicyId": None,
    }
    to_string = (
        f"[Subject]\r\n  {adapted['Subject']}\r\n\r\n[Issuer]\r\n  {adapted['Issuer']}\r\n\r\n"
        f"[Serial Number]\r\n  {adapted['SerialNumber']}\r\n\r\n[Not Before]\r\n  "
        f"{cert.not_valid_before_utc:%m/%d/%Y %H:%M:%S}\r\n\r\n[Not After]\r\n  "
        f"{cert.not_valid_after_utc:%m/%d/%Y %H:%M:%S}\r\n\r\n[Thumbprint]\r\n  {thumbprint}\r\n"
    )
    return dotnet_object(X509_CERTIFICATE2_TN, adapted, extended, to_string=to_string)


def _store_object(store: str) -> Any:
    adapted = {
        "Name": store,
        "Location": StoreLocation[LOCATION],
        "Certificates": "System.Security.Cryptography.X509Certificates.X509Certificate2Collection",
        "StoreHandle": str(int(hashlib.sha256(store.encode()).hexdigest()[:12], 16)),
    }
    extended = item_properties(CERTIFICATES, f"{LOCATION}\\{store}", True)
    return dotnet_object(_X509_STORE_TN, adapted, extended, to_string=_X509_STORE_TN[0])


def _location_object() -> Any:
    adapted = {"Location": StoreLocation[LOCATION], "StoreNames": "System.Collections.Hashtable"}
    extended = item_properties(CERTIFICATES, LOCATION, True)
    return dotnet_object(_STORE_LOCATION_TN, adapted, extended, to_string=_STORE_LOCATION_TN[0])


class CertificateProvider:
    name = "Microsoft.PowerShell.Security\\Certificate"
    drive = "Cert"

    def normalize(self, inner: str) -> str:
        parts = [p for p in inner.split("\\") if p]
        if parts and parts[0].lower() == LOCATION.lower():
            parts[0] = LOCATION
        if len(parts) > 1:
            parts[1] = next((s for s in CERT_STORES if s.lower() == parts[1].lower()), parts[1])
        if len(parts) > 2:
            parts[2] = parts[2].upper()
        return "\\".join(parts)

    @staticmethod
    def _split(inner: str) -> list[str]:
        return [p for p in inner.split("\\") if p]

    def exists(self, host: Host, inner: str) -> bool:
        parts = self._split(inner)
        if not parts:
            return True
        if parts[0] != LOCATION:
            return False
        if len(parts) == 1:
            return True
        if host.certificates.store_name(parts[1]) is None:
            return False
        if len(parts) == 2:
            return True
        return len(parts) == 3 and host.certificates.get(parts[1], parts[2]) is not None

    def is_container(self, host: Host, inner: str) -> bool:
        return len(self._split(inner)) < 3

    def get_item(self, ctx: CmdletContext, inner: str) -> Any:
        parts = self._split(inner)
        if len(parts) == 3:
            stored = ctx.host.certificates.get(parts[1], parts[2])
            assert stored is not None
            return certificate_object(stored, parts[1])
        if len(parts) == 2:
            return _store_object(parts[1])
        return _location_object()

    def children(self, ctx: CmdletContext, inner: str) -> list[tuple[str, Any]]:
        parts = self._split(inner)
        if not parts:
            return [(LOCATION, _location_object())]
        if len(parts) == 1:
            return [(f"{LOCATION}\\{s}", _store_object(s)) for s in CERT_STORES]
        if len(parts) == 2:
            return [
                (f"{LOCATION}\\{parts[1]}\\{c.thumbprint}", certificate_object(c, parts[1]))
                for c in ctx.host.certificates.store(parts[1]).values()
            ]
        return [(inner, self.get_item(ctx, inner))]

    def remove(self, ctx: CmdletContext, inner: str) -> None:
        parts = self._split(inner)
        if len(parts) != 3:
            ctx.throw(
                "System.Management.Automation.PSNotSupportedException",
                f"Cannot remove the certificate store or location '{inner}': hvsim keeps its stores.",
                "RemoveStoreNotSupported",
                ErrorCategory.NotImplemented,
                inner,
            )
        ctx.host.certificates.remove(parts[1], parts[2])

    def new_item(self, ctx: CmdletContext, inner: str, item_type: str | None, value: Any, force: bool) -> Any:
        ctx.throw(
            "System.Management.Automation.PSNotSupportedException",
            "New-Item on the Certificate provider is not supported by hvsim: import certificates with "
            "Import-PfxCertificate or Import-Certificate.",
            "NotSupported",
            ErrorCategory.NotImplemented,
            inner,
        )


CERTIFICATES = CertificateProvider()
register_provider(CERTIFICATES, "certificate")


# --- import cmdlets --------------------------------------------------------------------------------------


def _target_store(ctx: CmdletContext, args: BoundArguments) -> str:
    """The store -CertStoreLocation names (it defaults to the current location, which is never a store)."""
    location = args["CertStoreLocation"] or current_location(ctx)
    try:
        item = resolve_path(ctx, location)
    except PathError as err:
        raise_path_error(ctx, err)
    parts = [p for p in item.inner.split("\\") if p] if item.provider is CERTIFICATES else []
    if len(parts) != 2 or not CERTIFICATES.exists(ctx.host, item.inner):
        ctx.throw(
            "System.ArgumentException",
            f"The CertStoreLocation '{location}' is not a certificate store path; pass one such as "
            "Cert:\\LocalMachine\\My.",
            "System.ArgumentException",
            ErrorCategory.InvalidArgument,
            location,
        )
    return parts[1]


def raise_path_error(ctx: CmdletContext, err: PathError) -> NoReturn:
    raise TerminatingError(path_error(ctx, err))


def _read_file(ctx: CmdletContext, path: str) -> bytes:
    try:
        item: ItemPath = resolve_path(ctx, path)
    except PathError as err:
        raise_path_error(ctx, err)
    data = ctx.host.files.read(item.inner) if item.provider is FILESYSTEM else None
    if data is None:
        raise TerminatingError(not_found(ctx, path))
    return data


# -FilePath and -CertStoreLocation, as both import cmdlets of the PKI module declare them.
_IMPORT_PARAMS = (
    Param(
        "FilePath", STRING, aliases=("FullName",), mandatory=True, position=0, from_pipeline_by_property=True
    ),
    Param("CertStoreLocation", STRING),
)


def _crypto_failure(ctx: CmdletContext, message: str) -> NoReturn:
    """The Win32Exception (E_FAIL) the PKI module's import cmdlets throw when CryptoAPI refuses a file."""
    ctx.throw(
        "System.ComponentModel.Win32Exception",
        message,
        "System.ComponentModel.Win32Exception",
        ErrorCategory.NotSpecified,
        hresult=-2147467259,
    )


@cmdlet(
    "Import-PfxCertificate",
    f"{_PKI}.ImportPfxCertificate",
    [
        *_IMPORT_PARAMS,
        Param("Password", SECURE_STRING),
        Param("Exportable", SWITCH),
    ],
    supports_should_process=True,
)
def import_pfx_certificate(ctx: CmdletContext, args: BoundArguments) -> None:
    store = _target_store(ctx, args)
    data = _read_file(ctx, args["FilePath"])
    password = args["Password"]
    try:
        bundle = pkcs12.load_pkcs12(data, password.encode() if password else None)
    except ValueError:
        _crypto_failure(
            ctx,
            "The PFX file you are trying to import requires either a different password or membership in an "
            "Active Directory principal to which it is protected.",
        )
    if not ctx.should_process(args["FilePath"], "Import PFX certificate"):
        return
    certs = ctx.host.certificates
    if bundle.cert is None:
        # A PFX without a key: every certificate lands in the target store.
        for extra in bundle.additional_certs:
            ctx.write_output(
                certificate_object(certs.add(store, _stored(extra.certificate, None, False)), store)
            )
        return
    key_pem = None
    if bundle.key is not None:
        key_pem = bundle.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    friendly = bundle.cert.friendly_name.decode("utf-8", "replace") if bundle.cert.friendly_name else ""
    leaf = certs.add(store, _stored(bundle.cert.certificate, key_pem, bool(args["Exportable"]), friendly))
    # The rest of the chain goes where Windows puts it: self-signed roots to Root, other CAs to CA.
    for extra in bundle.additional_certs:
        cert = extra.certificate
        target = "Root" if cert.issuer == cert.subject else "CA"
        certs.add(target, _stored(cert, None, False))
    ctx.write_output(certificate_object(leaf, store))


def _stored(
    cert: x509.Certificate, key_pem: bytes | None, exportable: bool, friendly: str = ""
) -> StoredCertificate:
    return StoredCertificate(
        cert.public_bytes(serialization.Encoding.DER),
        key_pem=key_pem,
        exportable=exportable,
        friendly_name=friendly,
    )


def _parse_certificates(data: bytes) -> list[x509.Certificate]:
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificates(data)
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        try:
            return [x509.load_der_x509_certificate(base64.b64decode(data.strip(), validate=False))]
        except (ValueError, binascii.Error):
            return []


@cmdlet(
    "Import-Certificate",
    f"{_PKI}.ImportCertificateCommand",
    [
        *_IMPORT_PARAMS,
    ],
    supports_should_process=True,
)
def import_certificate(ctx: CmdletContext, args: BoundArguments) -> None:
    store = _target_store(ctx, args)
    certs = _parse_certificates(_read_file(ctx, args["FilePath"]))
    if not certs:
        _crypto_failure(ctx, "Cannot find object or property. 0x80092004 (-2146885628 CRYPT_E_NOT_FOUND)")
    if not ctx.should_process(args["FilePath"], "Import certificate"):
        return
    for cert in certs:
        ctx.write_output(
            certificate_object(ctx.host.certificates.add(store, _stored(cert, None, False)), store)
        )
