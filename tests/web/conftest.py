"""The web tests' browser fixtures (``browser``, ``page``: a real chromium, see ``tests/browser.py``)."""

from tests.browser import browser, page  # noqa: F401 (fixtures, made visible to tests/web)
