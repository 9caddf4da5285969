"""The daemon's status page (``oaiod ctl ui``): server-rendered pages served inside the daemon process.

What it shows and does: the status in words, the folders with their state, the live transfers, the conflicts
(both files side by side), the history, and the actions ``ctl`` has (pause, resume, sync, restore, exclude) —
every read and action through the same :class:`oaiod.daemon.ctl.commands.DaemonCommands` methods ``ctl`` calls,
never a second implementation. Live updates come by server-sent events (``/events``; ``static/ui.js`` swaps in
the sections the server rendered); without JavaScript the page still works, reloaded by hand.

Security (the page can pause syncing and restore files, so it is guarded like Syncthing's GUI):

- it listens on 127.0.0.1 only (``[ui] port``, 0: a free port), and only while the daemon runs;
- a random token is kept in ``<state_dir>/ui-token`` (0600; never in ``ps``, never logged). A request carries it
  in the ``oaiod_ui`` cookie (HttpOnly, SameSite=Strict) or, for scripts, an ``X-API-Key`` header; anything else
  is answered 403. ``ctl ui`` gets a *one-time* login URL over the owner-only control socket (a code valid
  :data:`~oaiod.daemon.ui.server.LOGIN_CODE_SECONDS`, used once), which sets the cookie and redirects away;
- every request must name ``Host: 127.0.0.1:PORT`` (a DNS-rebinding page names its own host: 403), and every
  POST also needs a matching ``Origin`` (when the browser sends one) and the form's CSRF field;
- a strict Content-Security-Policy (no inline script or style, nothing from other origins), and every name a
  user or a server wrote (file names are hostile input) is escaped by Jinja's autoescape.

Modules: :mod:`.server` (uvicorn in a thread, the token and login codes), :mod:`.guard` (what every request must
carry), :mod:`.app` (the routes), :mod:`.compare` (a conflict's two files side by side).
"""
