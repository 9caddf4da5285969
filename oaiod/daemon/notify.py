"""``sd_notify`` for systemd ``Type=notify`` units: READY=1, STATUS=…, WATCHDOG=1 and STOPPING=1 over
``NOTIFY_SOCKET``; a no-op without one."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class SystemdNotifier:
    """``sd_notify`` over the ``NOTIFY_SOCKET`` datagram socket; a no-op without one.

    A path starting with ``@`` is an abstract socket. Send failures are logged once and never raised: systemd
    going away must not stop the daemon.
    """

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval = _watchdog_interval(env)
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *assignments: str) -> None:
        """Send ``KEY=VALUE`` lines, e.g. ``notify("READY=1", "STATUS=idle")``."""
        if not self.address:
            return
        message = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify systemd at %s: %s", self.address.lstrip("\0"), exc)
                self._warned = True


def _watchdog_interval(env: dict[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds when the watchdog is meant for this process, else None."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000
