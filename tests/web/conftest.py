"""The web tests' browser fixtures (``browser``, ``page``: a real chromium, see ``tests/browser.py``)."""

from tests.browser import browser, page  # noqa: F401 (fixtures, made visible to tests/web)
from tests.engine.test_version_copies import hub_device  # noqa: F401 (a device syncing to Hub storage)
