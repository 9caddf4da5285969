"""Hints in the daemon's log lines are lines to paste for its config (issue 14 §2): the engine writes
``oaiod ctl …``; the daemon's handlers add the ``--config`` it needs."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from oaiod.daemon.config import ctl_line
from oaiod.daemon.logs import CtlHints


def _logged(prefix: str, message: str, *args: object) -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(CtlHints(prefix))
    logger = logging.getLogger(f"test.hints.{id(out)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.warning(message, *args)
    logger.removeHandler(handler)
    return out.getvalue().strip()


def test_an_engine_hint_names_the_config_it_needs(tmp_path: Path) -> None:
    prefix = ctl_line(tmp_path / "work.toml")
    line = _logged(prefix, "%s: held; run `oaiod ctl confirm-delete %s`", "obj1", "obj1")
    assert line == f"obj1: held; run `{prefix} confirm-delete obj1`"
    assert f"--config {tmp_path / 'work.toml'}" in line
    assert _logged(prefix, "no hint here: %d%% done", 50) == "no hint here: 50% done"
    assert _logged("oaiod ctl", "run `oaiod ctl resume`") == "run `oaiod ctl resume`"  # the default config
