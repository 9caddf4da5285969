"""How long a failed item (an object, or one file of it) waits before its next try, by kind of failure.

A failure that passes by itself is tried again soon; one that waits for something to change is not tried every
few seconds, but tried again as soon as that change can have happened. The wait doubles with each failure in a row
of the same kind:

- **transient** (network, timeout, 429, 5xx): 10 s up to 1 h. It passes by itself, so soon is right; the cap
  keeps a long outage at one try per item an hour.
- **conflict** (a race with another device, a local edit during a transfer): 10 s up to 5 min. The next pull
  merges it, so try soon, but never in a hot loop.
- **auth** (credentials refused): 1 h up to 6 h; tried again early when the daemon starts or reloads its config,
  the only ways its credentials change. A wrong password tried every 10 s only feeds the server's login throttle.
- **quota** (the host is full, the file too large): 30 min up to 6 h; tried again early after a local change to the
  object (files deleted or shrunk). Retrying the same upload cannot help until someone makes room.
- **permission**, **not_found**, **invalid**: 30 min up to 6 h; tried again early after a local change to the
  object (a path or value fixed here). A right granted or an object fixed on the server shows when the long wait
  ends, or at once with ``ctl sync``.

``ctl sync`` and a new start of the daemon make every backed-off item due at once (the user asked, or may have
fixed something); success clears an item's row.
"""

from __future__ import annotations

from dataclasses import dataclass

from oaiod.errors import FailureKind


@dataclass(frozen=True)
class Backoff:
    """``first`` seconds after the first failure, doubling with each further one, at most ``most``."""

    first: float
    most: float

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failure in a row of the same kind (1 for the first)."""
        return min(self.most, self.first * 2.0 ** max(0, attempts - 1))


HOUR = 3600.0

BACKOFF: dict[FailureKind, Backoff] = {
    FailureKind.TRANSIENT: Backoff(10.0, HOUR),
    FailureKind.CONFLICT: Backoff(10.0, 300.0),
    FailureKind.AUTH: Backoff(HOUR, 6 * HOUR),
    FailureKind.QUOTA: Backoff(HOUR / 2, 6 * HOUR),
    FailureKind.PERMISSION: Backoff(HOUR / 2, 6 * HOUR),
    FailureKind.NOT_FOUND: Backoff(HOUR / 2, 6 * HOUR),
    FailureKind.INVALID: Backoff(HOUR / 2, 6 * HOUR),
}

#: kinds whose items are tried again once their object changed here
RETRIED_AFTER_LOCAL_CHANGE: frozenset[FailureKind] = frozenset(
    {FailureKind.QUOTA, FailureKind.PERMISSION, FailureKind.NOT_FOUND, FailureKind.INVALID}
)

#: kinds of a failed file merge that wait out their backoff in the pull: trying again costs a transfer (the host
#: failing or missing the content, a full disk here). A local obstacle (a symlink or folder in the way, a permission
#: here) costs only a look, so it is tried at every pull of its object, and a user's fix works at once
WAITED_OUT_BY_FILES: frozenset[FailureKind] = frozenset(
    {FailureKind.TRANSIENT, FailureKind.QUOTA, FailureKind.NOT_FOUND}
)
