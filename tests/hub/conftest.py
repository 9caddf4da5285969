"""Hub tests run on every database: ``hub`` here is parametrized over ``db_url`` (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from oaiod.hub.db import Base
from oaiod.hub.server import HubServer


@pytest.fixture
def hub(db_url: str, hub_factory: Callable[..., HubServer]) -> HubServer:
    """A running hub with alice (supervisor), bob and carol, on SQLite and on PostgreSQL."""
    return hub_factory(db_url=db_url)


def _snapshot(
    hub: HubServer, skip: tuple[str, ...] = ("sessions", "login_failures")
) -> dict[str, list[tuple[str, ...]]]:
    assert hub.service is not None
    tables: dict[str, list[tuple[str, ...]]] = {}
    with hub.service.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name not in skip:
                rows = conn.execute(sa.select(table)).all()
                tables[table.name] = sorted(tuple(repr(value) for value in row) for row in rows)
    return tables


@pytest.fixture
def db_snapshot() -> Callable[..., dict[str, Any]]:
    """``db_snapshot(hub)``: every row of every hub table but sessions and login failure counts (a refused login
    counts, as it should), to prove a refused request changed nothing."""
    return _snapshot


@pytest.fixture
def sessions(hub: HubServer, hub_session: Callable[..., Any]) -> dict[str, Any]:
    """Logged-in sessions of alice (supervisor), bob and carol on ``hub``."""
    return {name: hub_session(hub, name) for name in ("alice", "bob", "carol")}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Blob tests run the S3 content store on SQLite only: the content store and the database are independent,
    and every pairing would double the wall time (see ``blob_store_param`` in ``blobhelpers.py``)."""
    kept, dropped = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        chosen = params.params if params is not None else {}
        pair = (chosen.get("db_url"), chosen.get("blob_store"))
        (dropped if pair == ("postgres", "s3") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
