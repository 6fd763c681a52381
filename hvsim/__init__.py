"""hvsim: an emulator of Windows Hyper-V hosts speaking real WinRM/PSRP (see `python -m hvsim --help`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hvsim.server import Emulator

__all__ = ["Emulator"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `import hvsim.config` (used by the provider's tests) stays light.
    if name == "Emulator":
        from hvsim.server import Emulator

        return Emulator
    raise AttributeError(f"module 'hvsim' has no attribute {name!r}")
