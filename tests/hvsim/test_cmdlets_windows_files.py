"""Conformance of the file cmdlets with the real pypsrp client: the stock hosts file, Get-Content's line
objects, Set-Content / Add-Content (text in the ANSI code page, -Encoding Byte with byte[] as Windows
PowerShell 5.1 takes it), New-Item, Remove-Item and the FileSystem errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.hvsim_env import host, lab_config, running_lab
from tests.support.hyperv import HostSession, props, sessions

FQDN = "files1.contoso.com"
HOSTS = "C:\\Windows\\System32\\drivers\\etc\\hosts"
TEMP = "C:\\Windows\\Temp"


@pytest.fixture(scope="module")
def hv() -> Iterator[HostSession]:
    with running_lab(lab_config(host(FQDN, "127.66.0.1"))) as emulator, sessions(emulator, FQDN) as opened:
        yield opened[FQDN]


def line_text(line: object) -> str:
    """Get-Content writes strings carrying PSPath & co. as notes; pypsrp keeps the string in property_sets."""
    return str(line.property_sets[0])  # type: ignore[attr-defined]


def test_hosts_file_has_the_stock_content(hv: HostSession) -> None:
    lines = hv.ok("Get-Content", Path=HOSTS)
    texts = [line_text(x) for x in lines]
    assert texts[0] == "# Copyright (c) 1993-2009 Microsoft Corp."
    assert "# localhost name resolution is handled within DNS itself." in texts
    assert texts[-2:] == ["#\t127.0.0.1       localhost", "#\t::1             localhost"]
    assert not [t for t in texts if t and not t.startswith("#")]  # no active entry on a fresh host
    first = lines[0]
    assert first.extended_properties["PSPath"] == f"Microsoft.PowerShell.Core\\FileSystem::{HOSTS}"
    assert first.extended_properties["ReadCount"] == 1
    raw = hv.ok("Get-Content", Path=HOSTS, Raw=True)
    assert line_text(raw[0]).endswith("#\t::1             localhost\r\n")


def test_set_and_add_content_write_ansi_text_with_crlf(hv: HostSession) -> None:
    path = f"{TEMP}\\text.txt"
    hv.ok("Set-Content", Path=path, Value=["one", "caf\u00e9"])
    hv.ok("Add-Content", Path=path, Value="10.0.0.5 replica.fabrikam.com # hvreplica")
    raw = hv.ok("Get-Content", Path=path, Encoding="Byte", ReadCount=0)
    assert raw == [b"one\r\ncaf\xe9\r\n10.0.0.5 replica.fabrikam.com # hvreplica\r\n"]
    assert [line_text(x) for x in hv.ok("Get-Content", Path=path, Tail=1)] == [
        "10.0.0.5 replica.fabrikam.com # hvreplica"
    ]


def test_set_content_byte_encoding_round_trips_binary(hv: HostSession) -> None:
    data = bytes(range(256)) * 4
    path = f"{TEMP}\\blob.bin"
    assert hv.ok("Set-Content", Path=path, Value=data, Encoding="Byte") == []
    assert hv.ok("Get-Content", Path=path, Encoding="Byte", ReadCount=0) == [data]
    item = hv.ok("Get-Item", Path=path)[0]
    assert item.types[:2] == ["System.IO.FileInfo", "System.IO.FileSystemInfo"]
    assert props(item)["Length"] == len(data)
    assert props(item)["FullName"] == path
    assert item.extended_properties["PSChildName"] == "blob.bin"


def test_utf8_encoding_writes_a_bom(hv: HostSession) -> None:
    path = f"{TEMP}\\utf8.txt"
    hv.ok("Set-Content", Path=path, Value="\u00e9", Encoding="UTF8")
    assert hv.ok("Get-Content", Path=path, Encoding="Byte", ReadCount=0) == [b"\xef\xbb\xbf\xc3\xa9\r\n"]
    assert [line_text(x) for x in hv.ok("Get-Content", Path=path)] == ["\u00e9"]


def test_missing_files_and_directories(hv: HostSession) -> None:
    missing = hv.run("Get-Content", Path=f"{TEMP}\\absent.txt")
    assert not missing.had_errors
    assert missing.error.fq_error == "PathNotFound,Microsoft.PowerShell.Commands.GetContentCommand"
    assert str(missing.error) == f"Cannot find path '{TEMP}\\absent.txt' because it does not exist."
    assert missing.error.category == 13  # ObjectNotFound
    no_dir = hv.run("Set-Content", Path="C:\\NoSuchDir\\x.txt", Value="x")
    assert str(no_dir.error) == "Could not find a part of the path 'C:\\NoSuchDir\\x.txt'."
    assert no_dir.error.fq_error == (
        "GetContentWriterDirectoryNotFoundError,Microsoft.PowerShell.Commands.SetContentCommand"
    )
    drive = hv.run("Get-Content", Path="Q:\\x.txt")
    assert str(drive.error) == "Cannot find drive. A drive with the name 'Q' does not exist."


def test_new_item_and_remove_item_on_files(hv: HostSession) -> None:
    directory = f"{TEMP}\\made"
    created = hv.ok("New-Item", Path=directory, ItemType="Directory")
    assert created[0].types[0] == "System.IO.DirectoryInfo"
    file_item = hv.ok("New-Item", Path=f"{directory}\\a.txt", ItemType="File", Value="hi")
    assert props(file_item[0])["Length"] == 2  # New-Item writes the value as is, without a newline
    exists = hv.run("New-Item", Path=f"{directory}\\a.txt", ItemType="File")
    assert exists.error.fq_error.endswith(",Microsoft.PowerShell.Commands.NewItemCommand")
    names = [props(x)["Name"] for x in hv.ok("Get-ChildItem", Path=directory)]
    assert names == ["a.txt"]
    hv.ok("Remove-Item", Path=directory, Recurse=True)
    assert hv.ok("Test-Path", Path=directory) == [False]
    gone = hv.run("Remove-Item", Path=directory)
    assert gone.error.fq_error == "PathNotFound,Microsoft.PowerShell.Commands.RemoveItemCommand"
