"""Provider paths, the provider-generic item cmdlets and the FileSystem provider.

PowerShell's item cmdlets (Get-Item, Get-ChildItem, Test-Path, New-Item, Remove-Item) dispatch on the provider
a path belongs to: FileSystem (C:\\...), Registry (HKLM:\\..., registry.py) or Certificate (Cert:\\...,
certificates.py). Those modules register their provider here. Get-Content and Set-Content are FileSystem-only.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from psrpcore.types import ErrorCategory, PSByte, PSByteArray, PSString, add_note_property

from hvsim.cmdlets.base import (
    BYTES,
    FORCE,
    INT32,
    INT64,
    OBJECT,
    OBJECTS,
    PASSTHRU,
    STRING,
    STRINGS,
    SWITCH,
    BoundArguments,
    CmdletContext,
    ConversionError,
    Param,
    cmdlet,
)
from hvsim.cmdlets.objects import datetime_value, define_enum, dotnet_object, i64
from hvsim.windows import FileSystem, Host, decode_text, normalize_file_path, parent_path

_CORE = "Microsoft.PowerShell.Commands"
ITEM_NOT_FOUND = "System.Management.Automation.ItemNotFoundException"


class ItemProvider(Protocol):
    """One PowerShell provider as the item cmdlets use it. `inner` paths are provider-internal: "C:\\x",
    "SOFTWARE\\Microsoft" (below HKEY_LOCAL_MACHINE), "LocalMachine\\My\\<thumbprint>"."""

    name: str  # "Microsoft.PowerShell.Core\\FileSystem"
    drive: str  # "C", "HKLM", "Cert"

    def normalize(self, inner: str) -> str: ...

    def exists(self, host: Host, inner: str) -> bool: ...

    def is_container(self, host: Host, inner: str) -> bool: ...

    def get_item(self, ctx: CmdletContext, inner: str) -> Any: ...

    def children(self, ctx: CmdletContext, inner: str) -> list[tuple[str, Any]]: ...

    def remove(self, ctx: CmdletContext, inner: str) -> None: ...

    def new_item(
        self, ctx: CmdletContext, inner: str, item_type: str | None, value: Any, force: bool
    ) -> Any: ...


@dataclass(frozen=True)
class ItemPath:
    provider: ItemProvider
    inner: str
    given: str  # as the caller wrote it, for messages

    @property
    def ps_path(self) -> str:
        return f"{self.provider.name}::{provider_root(self.provider)}{self.inner}"


def provider_root(provider: ItemProvider) -> str:
    return "HKEY_LOCAL_MACHINE\\" if provider.drive == "HKLM" else ""


_PROVIDERS: dict[str, ItemProvider] = {}  # lower-case drive name or provider name -> provider


def register_provider(provider: ItemProvider, *names: str) -> None:
    """Make `provider` reachable by its drive ("HKLM:\\..."), its name and the extra `names`
    (e.g. "Registry::HKEY_LOCAL_MACHINE")."""
    for name in (provider.drive, provider.name, provider.name.rsplit("\\", 1)[-1], *names):
        _PROVIDERS[name.lower()] = provider


class PathError(Exception):
    def __init__(self, kind: str, message: str, target: str) -> None:
        super().__init__(message)
        self.kind, self.message, self.target = kind, message, target


def current_location(ctx: CmdletContext) -> str:
    """Where a remote session starts: the connecting user's Documents folder."""
    user = ctx.host.local_user_name(ctx.user) or ctx.user.rsplit("\\", 1)[-1]
    return f"C:\\Users\\{user}\\Documents"


def resolve_path(ctx: CmdletContext, path: str) -> ItemPath:
    """Parse a provider path ("C:\\x", "HKLM:\\SOFTWARE", "Cert:\\LocalMachine\\My", "Registry::HKEY_...",
    "Microsoft.PowerShell.Security\\Certificate::LocalMachine") or a path relative to the current location."""
    text = path.strip().replace("/", "\\")
    if "::" in text:
        qualifier, rest = text.split("::", 1)
        provider = _PROVIDERS.get(qualifier.lower()) or _PROVIDERS.get(qualifier.rsplit("\\", 1)[-1].lower())
        if provider is None:
            raise PathError(
                "ProviderNotFound",
                f"Cannot find a provider with the name '{qualifier.rsplit(chr(92), 1)[-1]}'.",
                path,
            )
        if provider.drive == "HKLM":
            rest = _strip_hive(rest, path)
        return ItemPath(provider, provider.normalize(rest), path)
    if ":" in text:
        drive, rest = text.split(":", 1)
        provider = _PROVIDERS.get(drive.lower()) if len(drive) > 1 else _PROVIDERS.get("c")
        if provider is None or (len(drive) == 1 and drive.upper() != "C"):
            raise PathError(
                "DriveNotFound", f"Cannot find drive. A drive with the name '{drive}' does not exist.", drive
            )
        if provider.drive == "C":
            rest = f"C:\\{rest.lstrip(chr(92))}"
        return ItemPath(provider, provider.normalize(rest), path)
    base = current_location(ctx)
    return ItemPath(_PROVIDERS["c"], normalize_file_path(f"{base}\\{text}"), path)


def _strip_hive(rest: str, path: str) -> str:
    head, _, tail = rest.lstrip("\\").partition("\\")
    if head.upper() not in ("HKEY_LOCAL_MACHINE", "HKLM"):
        # Only HKLM is emulated; other hives behave as empty.
        raise PathError("PathNotFound", f"Cannot find path '{path}' because it does not exist.", path)
    return tail


def path_error(ctx: CmdletContext, err: PathError) -> Any:
    exception = {
        "DriveNotFound": "System.Management.Automation.DriveNotFoundException",
        "ProviderNotFound": "System.Management.Automation.ProviderNotFoundException",
    }.get(err.kind, ITEM_NOT_FOUND)
    return ctx.error(exception, err.message, err.kind, ErrorCategory.ObjectNotFound, err.target)


def not_found(ctx: CmdletContext, path: str) -> Any:
    """The record every provider cmdlet writes for a missing path."""
    return ctx.error(
        ITEM_NOT_FOUND,
        f"Cannot find path '{path}' because it does not exist.",
        "PathNotFound",
        ErrorCategory.ObjectNotFound,
        path,
    )


def has_wildcard(text: str) -> bool:
    return any(c in text for c in "*?[")


def resolve_existing(
    ctx: CmdletContext, path: str, literal: bool = True, report_missing: bool = True
) -> list[ItemPath]:
    """The existing items `path` names. Without `literal`, wildcards in its last segment match child names
    (quietly matching nothing, as the engine's globbing does); a plain missing path writes PathNotFound
    unless `report_missing` is off."""
    try:
        item = resolve_path(ctx, path)
    except PathError as err:
        if report_missing:
            ctx.write_error(path_error(ctx, err))
        return []
    parent, _, pattern = item.inner.rstrip("\\").rpartition("\\")
    if not literal and has_wildcard(pattern):
        provider = item.provider
        parent = provider.normalize(parent)
        if not provider.exists(ctx.host, parent):
            return []
        return [
            ItemPath(provider, child, child)
            for child, _ in provider.children(ctx, parent)
            if fnmatch.fnmatchcase(child.rsplit("\\", 1)[-1].lower(), pattern.lower())
        ]
    if not item.provider.exists(ctx.host, item.inner):
        if report_missing:
            ctx.write_error(not_found(ctx, path))
        return []
    return [item]


def item_properties(provider: ItemProvider, inner: str, container: bool) -> dict[str, Any]:
    """The PS* note properties the provider adds to every item it returns."""
    root = provider_root(provider)
    full = f"{root}{inner}"
    parent, _, child = full.rstrip("\\").rpartition("\\")
    return {
        "PSPath": f"{provider.name}::{full}",
        "PSParentPath": f"{provider.name}::{parent + chr(92) if parent.endswith(':') else parent}"
        if parent
        else "",
        "PSChildName": child or full,
        "PSDrive": provider.drive,
        "PSProvider": provider.name,
        "PSIsContainer": container,
    }


# --- FileSystem provider ----------------------------------------------------------------------------------

_FILE_INFO_TN = ("System.IO.FileInfo", "System.IO.FileSystemInfo", "System.MarshalByRefObject")
_DIRECTORY_INFO_TN = ("System.IO.DirectoryInfo", "System.IO.FileSystemInfo", "System.MarshalByRefObject")
FileAttributes = define_enum("System.IO.FileAttributes", {"Directory": 16, "Archive": 32})


class FileSystemProvider:
    name = "Microsoft.PowerShell.Core\\FileSystem"
    drive = "C"

    def normalize(self, inner: str) -> str:
        return normalize_file_path(inner)

    def exists(self, host: Host, inner: str) -> bool:
        return host.files.exists(inner)

    def is_container(self, host: Host, inner: str) -> bool:
        return host.files.is_dir(inner)

    def get_item(self, ctx: CmdletContext, inner: str) -> Any:
        return file_item(ctx.host.files, inner, self, ctx.lab.now())

    def children(self, ctx: CmdletContext, inner: str) -> list[tuple[str, Any]]:
        if not ctx.host.files.is_dir(inner):
            return [(inner, self.get_item(ctx, inner))]
        now = ctx.lab.now()
        return [(p, file_item(ctx.host.files, p, self, now)) for p, _ in ctx.host.files.children(inner)]

    def remove(self, ctx: CmdletContext, inner: str) -> None:
        ctx.host.files.remove(inner)

    def new_item(self, ctx: CmdletContext, inner: str, item_type: str | None, value: Any, force: bool) -> Any:
        files = ctx.host.files
        kind = (item_type or "File").lower()
        if kind not in ("file", "directory"):
            ctx.throw(
                "System.Management.Automation.PSArgumentException",
                f"The type '{item_type}' is not a valid type for the FileSystem provider. Specify File or "
                "Directory.",
                "Argument",
                ErrorCategory.InvalidArgument,
                item_type,
            )
        if kind == "directory":
            if files.is_dir(inner) and not force:
                ctx.write_error(
                    ctx.error(
                        "System.IO.IOException",
                        f"An item with the specified name {inner} already exists.",
                        "DirectoryExist",
                        ErrorCategory.ResourceExists,
                        inner,
                    )
                )
                return None
            files.make_dirs(inner)
        else:
            if files.exists(inner) and not force:
                ctx.write_error(
                    ctx.error(
                        "System.IO.IOException",
                        f"The file '{inner}' already exists.",
                        "NewItemIOError",
                        ErrorCategory.WriteError,
                        inner,
                    )
                )
                return None
            parent = parent_path(inner)
            if not files.is_dir(parent):
                if not force:
                    ctx.write_error(directory_not_found(ctx, inner, "NewItemIOError"))
                    return None
                files.make_dirs(parent)
            data = b"" if value is None else encode_text(_text_of(value), "Default")
            files.write(inner, data, ctx.lab.now())
        return self.get_item(ctx, inner)


FILESYSTEM = FileSystemProvider()
register_provider(FILESYSTEM, "filesystem")


def directory_not_found(ctx: CmdletContext, path: str, error_id: str) -> Any:
    return ctx.error(
        "System.IO.DirectoryNotFoundException",
        f"Could not find a part of the path '{path}'.",
        error_id,
        ErrorCategory.ObjectNotFound,
        path,
    )


def file_item(files: FileSystem, inner: str, provider: ItemProvider, now: dt.datetime) -> Any:
    """System.IO.FileInfo / DirectoryInfo with the adapted properties .NET has and the provider's notes."""
    is_dir = files.is_dir(inner)
    entry = None if is_dir else files.entry(inner)
    path = entry.path if entry else files.directories.get(normalize_file_path(inner).lower(), inner)
    name = path if parent_path(path) == path else path.rsplit("\\", 1)[-1]
    written = entry.last_write if entry else now
    adapted: dict[str, Any] = {"Name": name}
    if entry is not None:
        adapted["Length"] = i64(len(entry.data))
        adapted["DirectoryName"] = parent_path(path)
        adapted["Directory"] = parent_path(path)
        adapted["IsReadOnly"] = False
    else:
        adapted["Parent"] = parent_path(path) if parent_path(path) != path else None
        adapted["Root"] = path[:3]
    stem, dot, ext = name.rpartition(".")
    adapted.update(
        {
            "Exists": True,
            "FullName": path,
            "Extension": f".{ext}" if dot and entry is not None else "",
            "CreationTime": datetime_value(written),
            "CreationTimeUtc": datetime_value(written),
            "LastAccessTime": datetime_value(written),
            "LastAccessTimeUtc": datetime_value(written),
            "LastWriteTime": datetime_value(written),
            "LastWriteTimeUtc": datetime_value(written),
            "Attributes": FileAttributes["Directory" if is_dir else "Archive"],
        }
    )
    extended = item_properties(provider, path, is_dir)
    extended["Mode"] = "d-----" if is_dir else "-a----"
    extended["BaseName"] = stem if dot and entry is not None else name
    return dotnet_object(_DIRECTORY_INFO_TN if is_dir else _FILE_INFO_TN, adapted, extended, to_string=name)


# --- encodings (Windows PowerShell 5.1's FileSystemCmdletProviderEncoding) ---------------------------------

ENCODINGS = (
    "Unknown",
    "String",
    "Unicode",
    "Byte",
    "BigEndianUnicode",
    "UTF8",
    "UTF7",
    "UTF32",
    "Ascii",
    "Default",
    "Oem",
    "BigEndianUTF32",
)


def encode_text(text: str, encoding: str) -> bytes:
    """Bytes as Windows PowerShell 5.1 writes them: "Default" is the ANSI code page, Unicode and UTF8 carry
    a BOM."""
    enc = encoding.lower()
    if enc in ("unicode", "string", "unknown"):
        return b"\xff\xfe" + text.encode("utf-16-le")
    if enc == "bigendianunicode":
        return b"\xfe\xff" + text.encode("utf-16-be")
    if enc == "utf8":
        return b"\xef\xbb\xbf" + text.encode("utf-8")
    if enc == "utf7":
        return text.encode("utf-7")
    if enc == "utf32":
        return b"\xff\xfe\x00\x00" + text.encode("utf-32-le")
    if enc == "bigendianutf32":
        return b"\x00\x00\xfe\xff" + text.encode("utf-32-be")
    if enc == "ascii":
        return text.encode("ascii", errors="replace")
    if enc == "oem":
        return text.encode("cp437", errors="replace")
    return text.encode("cp1252", errors="replace")


def decode_with(data: bytes, encoding: str | None) -> str:
    if encoding is None or encoding.lower() in ("default", "unknown", "string", "oem"):
        return decode_text(data)
    if encoding.lower() == "ascii":
        return data.decode("ascii", errors="replace")
    codec = {
        "unicode": "utf-16",
        "bigendianunicode": "utf-16-be",
        "utf8": "utf-8-sig",
        "utf7": "utf-7",
        "utf32": "utf-32",
        "bigendianutf32": "utf-32-be",
    }[encoding.lower()]
    return data.decode(codec, errors="replace")


def _text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


# --- item cmdlets ------------------------------------------------------------------------------------------

_PATH = Param("Path", STRINGS, position=0, sets=("Path",), from_pipeline=True, from_pipeline_by_property=True)
# -LiteralPath as every provider cmdlet declares it (taken as written, never as a wildcard).
LITERAL_PATH = Param(
    "LiteralPath",
    STRINGS,
    aliases=("PSPath",),
    mandatory=True,
    sets=("LiteralPath",),
    from_pipeline_by_property=True,
)
_PATH_MANDATORY = replace(_PATH, mandatory=True)


def path_arguments(args: BoundArguments, default: str | None = None) -> list[tuple[str, bool]]:
    """(path, literal) pairs: -LiteralPath is taken as written, -Path may hold wildcards."""
    if "LiteralPath" in args:
        return [(p, True) for p in args["LiteralPath"]]
    if "Path" in args:
        return [(p, False) for p in args["Path"]]
    return [(default, True)] if default else []


@cmdlet(
    "Get-Item",
    f"{_CORE}.GetItemCommand",
    [_PATH_MANDATORY, LITERAL_PATH, FORCE],
    default_set="Path",
    supports_should_process=False,
)
def get_item(ctx: CmdletContext, args: BoundArguments) -> None:
    for path, literal in path_arguments(args):
        for item in resolve_existing(ctx, path, literal):
            ctx.write_output(item.provider.get_item(ctx, item.inner))


@cmdlet(
    "Get-ChildItem",
    f"{_CORE}.GetChildItemCommand",
    [_PATH, LITERAL_PATH, Param("Recurse", SWITCH, aliases=("s",)), FORCE, Param("Name", SWITCH)],
    default_set="Path",
)
def get_child_item(ctx: CmdletContext, args: BoundArguments) -> None:
    for path, literal in path_arguments(args, current_location(ctx)):
        for item in resolve_existing(ctx, path, literal):
            _emit_children(ctx, item.provider, item.inner, bool(args["Recurse"]), bool(args["Name"]))


def _emit_children(
    ctx: CmdletContext, provider: ItemProvider, inner: str, recurse: bool, names: bool
) -> None:
    for child_inner, obj in provider.children(ctx, inner):
        ctx.write_output(PSString(child_inner.rsplit("\\", 1)[-1]) if names else obj)
        if recurse and child_inner != inner and provider.is_container(ctx.host, child_inner):
            _emit_children(ctx, provider, child_inner, recurse, names)


@cmdlet(
    "Test-Path",
    f"{_CORE}.TestPathCommand",
    [
        _PATH_MANDATORY,
        LITERAL_PATH,
        Param("PathType", STRING, aliases=("Type",), choices=("Any", "Container", "Leaf")),
        Param("IsValid", SWITCH),
    ],
    default_set="Path",
)
def test_path(ctx: CmdletContext, args: BoundArguments) -> None:
    wanted = str(args.get("PathType", "Any")).lower()
    for path, literal in path_arguments(args):
        if args["IsValid"]:
            try:
                resolve_path(ctx, path)
            except PathError:
                ctx.write_output(False)
            else:
                ctx.write_output(True)
            continue
        # Test-Path answers False for a missing path or drive, never with an error.
        items = resolve_existing(ctx, path, literal, report_missing=False)
        if wanted != "any":
            containers = wanted == "container"
            items = [i for i in items if i.provider.is_container(ctx.host, i.inner) == containers]
        ctx.write_output(bool(items))


@cmdlet(
    "New-Item",
    f"{_CORE}.NewItemCommand",
    [
        Param(
            "Path",
            STRINGS,
            position=0,
            mandatory=("pathSet",),
            sets=("pathSet", "nameSet"),
            from_pipeline_by_property=True,
        ),
        Param("Name", STRING, mandatory=("nameSet",), sets=("nameSet",), from_pipeline_by_property=True),
        Param("ItemType", STRING, aliases=("Type",), from_pipeline_by_property=True),
        Param("Value", OBJECT, aliases=("Target",), from_pipeline=True, from_pipeline_by_property=True),
        FORCE,
    ],
    default_set="pathSet",
    supports_should_process=True,
)
def new_item(ctx: CmdletContext, args: BoundArguments) -> None:
    bases = list(args["Path"]) if "Path" in args else [current_location(ctx)]
    for base in bases:
        target = f"{base.rstrip(chr(92))}\\{args['Name']}" if "Name" in args else base
        try:
            item = resolve_path(ctx, target)
        except PathError as err:
            ctx.write_error(path_error(ctx, err))
            continue
        if not ctx.should_process(target, "Create Directory" if args["ItemType"] else "Create File"):
            continue
        created = item.provider.new_item(
            ctx, item.inner, args["ItemType"], args["Value"], bool(args["Force"])
        )
        if created is not None:
            ctx.write_output(created)


@cmdlet(
    "Remove-Item",
    f"{_CORE}.RemoveItemCommand",
    [
        _PATH_MANDATORY,
        LITERAL_PATH,
        Param("Recurse", SWITCH, aliases=("r",)),
        FORCE,
        Param("DeleteKey", SWITCH),
    ],
    default_set="Path",
    supports_should_process=True,
)
def remove_item(ctx: CmdletContext, args: BoundArguments) -> None:
    for item in (i for path, literal in path_arguments(args) for i in resolve_existing(ctx, path, literal)):
        path = item.given
        provider = item.provider
        if (
            provider.is_container(ctx.host, item.inner)
            and not args["Recurse"]
            and provider.children(ctx, item.inner)
        ):
            ctx.should_continue(
                f"The item at {path} has children and the Recurse parameter was not specified. If you "
                "continue, all children will be removed with the item. Are you sure you want to continue?",
                force=False,
            )
        if ctx.should_process(path, "Remove Item"):
            provider.remove(ctx, item.inner)


# --- content cmdlets ---------------------------------------------------------------------------------------

_ENCODING = Param("Encoding", STRING, choices=ENCODINGS)


def _no_content(ctx: CmdletContext, path: str) -> Any:
    """Content cmdlets on a provider without content (Registry, Certificate)."""
    return ctx.error(
        "System.Management.Automation.PSNotSupportedException",
        "Cannot use interface. The IContentCmdletProvider interface is not implemented by this provider.",
        "NotSupported",
        ErrorCategory.NotImplemented,
        path,
    )


def _with_notes(value: Any, notes: dict[str, Any]) -> Any:
    for key, note in notes.items():
        add_note_property(value, key, note)
    return value


@cmdlet(
    "Get-Content",
    f"{_CORE}.GetContentCommand",
    [
        _PATH_MANDATORY,
        LITERAL_PATH,
        _ENCODING,
        Param("Raw", SWITCH),
        Param("TotalCount", INT64, aliases=("First", "Head"), default=-1),
        Param("Tail", INT32, aliases=("Last",)),
        Param("ReadCount", INT64, default=1),
        FORCE,
    ],
    default_set="Path",
)
def get_content(ctx: CmdletContext, args: BoundArguments) -> None:
    for item in (i for path, literal in path_arguments(args) for i in resolve_existing(ctx, path, literal)):
        path = item.given
        if item.provider is not FILESYSTEM:
            ctx.write_error(_no_content(ctx, path))
            continue
        if ctx.host.files.is_dir(item.inner):
            ctx.write_error(
                ctx.error(
                    "System.UnauthorizedAccessException",
                    f"Access to the path '{item.inner}' is denied.",
                    "GetContentReaderUnauthorizedAccessError",
                    ErrorCategory.PermissionDenied,
                    path,
                )
            )
            continue
        data = ctx.host.files.read(item.inner) or b""
        notes = {
            k: v for k, v in item_properties(FILESYSTEM, item.inner, False).items() if k != "PSIsContainer"
        }
        encoding = args["Encoding"]
        if encoding is not None and encoding.lower() == "byte":
            _emit_bytes(ctx, data, args)
            continue
        text = decode_with(data, encoding)
        if args["Raw"]:
            ctx.write_output(_with_notes(PSString(text), {**notes, "ReadCount": i64(1)}))
            continue
        lines = text.splitlines()
        count = args["TotalCount"]
        if count >= 0:
            lines = lines[:count]
        if args["Tail"] is not None:
            lines = lines[-args["Tail"] :] if args["Tail"] > 0 else []
        # Notes as GetContentCommand attaches them; ReadCount is a long (I64). With no ToString of its own,
        # a line travels as <Obj><S>line</S><MS>notes</MS></Obj>, which pypsrp reads into property_sets[0].
        for number, line in enumerate(lines, start=1):
            ctx.write_output(_with_notes(PSString(line), {**notes, "ReadCount": i64(number)}))


def _emit_bytes(ctx: CmdletContext, data: bytes, args: BoundArguments) -> None:
    # One System.Byte per byte, or one byte[] with -ReadCount 0 or -Raw. Windows also attaches the content
    # notes to each (see docs/hvsim.md); hvsim sends the bare values.
    if args["Raw"] or args["ReadCount"] <= 0:
        ctx.write_output(PSByteArray(data))
        return
    for byte in data:
        ctx.write_output(PSByte(byte))


def _content_bytes(values: Iterable[Any], encoding: str | None, no_newline: bool) -> bytes:
    if encoding is not None and encoding.lower() == "byte":
        chunks = [BYTES.convert(v) for v in values]
        return b"".join(chunks)
    separator = "" if no_newline else "\r\n"
    text = "".join(f"{_text_of(v)}{separator}" for v in values)
    return encode_text(text, encoding or "Default")


_WRITE_CONTENT_PARAMS = [
    replace(_PATH_MANDATORY, from_pipeline=False),
    LITERAL_PATH,
    Param(
        "Value",
        OBJECTS,
        mandatory=True,
        position=1,
        from_pipeline=True,
        from_pipeline_by_property=True,
        allow_empty=True,
    ),
    _ENCODING,
    Param("NoNewline", SWITCH),
    FORCE,
    PASSTHRU,
]
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff", b"\xff\xfe", b"\xfe\xff")


@cmdlet(
    "Set-Content",
    f"{_CORE}.SetContentCommand",
    _WRITE_CONTENT_PARAMS,
    default_set="Path",
    supports_should_process=True,
)
def set_content(ctx: CmdletContext, args: BoundArguments) -> None:
    _write_content(ctx, args, append=False)


@cmdlet(
    "Add-Content",
    f"{_CORE}.AddContentCommand",
    _WRITE_CONTENT_PARAMS,
    default_set="Path",
    supports_should_process=True,
)
def add_content(ctx: CmdletContext, args: BoundArguments) -> None:
    _write_content(ctx, args, append=True)


def _write_content(ctx: CmdletContext, args: BoundArguments, append: bool) -> None:
    """Set-Content clears the file once, Add-Content keeps what was there; both then add every record's
    values (the text form of each value plus CRLF, or raw bytes with -Encoding Byte)."""
    encoding = args["Encoding"]
    values = list(args["Value"] or [])
    for path, _ in path_arguments(args):
        try:
            item = resolve_path(ctx, path)
        except PathError as err:
            ctx.write_error(path_error(ctx, err))
            continue
        if item.provider is not FILESYSTEM:
            ctx.write_error(_no_content(ctx, path))
            continue
        if not ctx.host.files.is_dir(parent_path(item.inner)):
            ctx.write_error(directory_not_found(ctx, item.inner, "GetContentWriterDirectoryNotFoundError"))
            continue
        if not ctx.should_process(item.inner, "Add Content" if append else "Set Content"):
            continue
        key = item.inner.lower()
        if key not in ctx.state:
            existing = ctx.host.files.read(item.inner) if append else None
            ctx.state[key] = ([], existing or b"")
        written, original = ctx.state[key]
        try:
            data = _content_bytes([*written, *values], encoding, bool(args["NoNewline"]))
        except ConversionError as exc:
            ctx.throw(
                "System.Management.Automation.PSInvalidCastException",
                exc.detail,
                "InvalidCastFromAnyTypeToByte",
                ErrorCategory.InvalidArgument,
            )
        if original:
            data = next((data[len(bom) :] for bom in _BOMS if data.startswith(bom)), data)
        written.extend(values)
        ctx.host.files.write(item.inner, original + data, ctx.lab.now())
        if args["PassThru"]:
            for value in values:
                ctx.write_output(value)
