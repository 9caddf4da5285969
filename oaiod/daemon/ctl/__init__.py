"""``oaiod ctl``: JSON lines over the daemon's owner-only Unix socket — :mod:`~oaiod.daemon.ctl.protocol` (server
and client) and :mod:`~oaiod.daemon.ctl.commands` (the daemon's command table)."""
