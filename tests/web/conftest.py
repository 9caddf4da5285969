"""Fixtures of the web tests (the browser is registered once for every test in ``tests/conftest.py``)."""

from tests.engine.conftest import hub_device  # noqa: F401 (a device syncing to Hub storage)
