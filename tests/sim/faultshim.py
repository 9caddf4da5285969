"""Clock jumps and a full disk inside a daemon process (design §8): ``faultshim.c`` preloaded into it.

The shim is compiled once per test session with the system's C compiler (``.ci/run`` installs gcc where there is
none) and preloaded with ``LD_PRELOAD``; each device has a 16-byte control file the shim maps, so the driver can
move the device's wall clock and fill or free its disk while the daemon runs, without restarting it. This stands
in for what cannot exist here: a machine whose clock jumps or whose disk fills (libfaketime breaks CPython's
``time.sleep``; a small file system needs mount rights). The driver's own writes into the device's folder are not
affected (the user's program may have written before the disk filled); it stamps them with the device's clock.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

SOURCE = Path(__file__).with_name("faultshim.c")
_LAYOUT = struct.Struct("=qq")  # offset_ns, disk_full


def build(folder: Path | None = None) -> Path:
    """The compiled shim (cached by the source's hash); raises ``RuntimeError`` without a C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("the sim's clock and disk faults need a C compiler (apt-get install gcc; .ci/run does it)")
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    folder = folder or Path(tempfile.gettempdir()) / f"oaiod-faultshim-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    library = folder / f"faultshim-{digest}.so"
    if not library.exists():
        partial = folder / f".{library.name}.{os.getpid()}"
        subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(partial), str(SOURCE), "-ldl"], check=True)
        partial.replace(library)
    return library


class DeviceFaults:
    """One device's control file: the env a daemon needs to obey it, and the driver's levers."""

    def __init__(self, path: Path, library: Path) -> None:
        self.path = path
        self.library = library
        path.write_bytes(_LAYOUT.pack(0, 0))
        self.offset = 0.0
        self.disk_full = False

    def env(self) -> dict[str, str]:
        preload = " ".join(filter(None, [str(self.library), os.environ.get("LD_PRELOAD", "")]))
        return {"LD_PRELOAD": preload, "OAIOD_SIM_FAULTS": str(self.path)}

    def _write(self) -> None:
        with self.path.open("r+b") as control:
            control.write(_LAYOUT.pack(int(self.offset * 1e9), int(self.disk_full)))

    def jump(self, seconds: float) -> None:
        """Set the device's wall clock ``seconds`` away from the real one (0: back to true time)."""
        self.offset = seconds
        self._write()

    def fill(self, full: bool) -> None:
        """Make every write of the daemon to a regular file fail with ENOSPC (or work again)."""
        self.disk_full = full
        self._write()

    def now(self) -> float:
        """The device's wall clock, for stamping the driver's writes there."""
        return time.time() + self.offset
