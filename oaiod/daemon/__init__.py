"""The daemon: one process per config that keeps its folders in sync (design §6).

:mod:`~oaiod.daemon.process` (the process: lock, logs, signals, systemd notify, start and stop of the parts),
:mod:`~oaiod.daemon.wiring` (config → server API or embedded hub, state, storage, the engine),
:mod:`~oaiod.daemon.scheduler` (sync, rescan and gc jobs; the change-feed thread), :mod:`~oaiod.daemon.watch`
(watchdog observers → dirty paths), :mod:`~oaiod.daemon.config` (the TOML config), :mod:`~oaiod.daemon.ctl`
(the control socket: protocol and commands), :mod:`~oaiod.daemon.service` (systemd / launchd files) and
:mod:`~oaiod.daemon.cli` (``oaiod run | ctl | service``).
"""
