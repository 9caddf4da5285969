"""Two hub processes on one PostgreSQL database and one bucket: the blob store's per-process lock and holds do not
reach across them, so the database's advisory locks must (``BlobStore.confirm_contents``)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from oaiod.hub.server import HubServer
from tests.hub.blobhelpers import B, create, download, new_id, put_large

pytestmark = pytest.mark.integration


@pytest.mark.postgres
def test_two_hub_processes_never_leave_a_name_without_its_content(
    postgres_url: str, hub_factory: Callable[..., HubServer], hub_session: Callable[..., Any], hub_bucket: Any
) -> None:
    """Two hubs on one PostgreSQL database and one bucket (each its own blob store, lock and holds: two processes
    as far as the blob store can tell). Through hub 1 the last name of a content goes while through hub 2 a new
    name of the same content is published, again and again: every name left must download its bytes (a publish
    that lost the race answers 503 and leaves no name). One of the two starts late by a varying head start, so
    both outcomes happen however busy the machine is (with no head start the delete nearly always wins)."""
    store = hub_bucket.settings()
    one = hub_factory(db_url=postgres_url, blob_store=store)
    two = hub_factory(db_url=postgres_url, blob_store=store, users=False)
    two.users = one.users
    first, second = hub_session(one, "alice"), hub_session(two, "alice")
    outcomes: Counter[int] = Counter()
    head_starts = [0.0, 0.01, 0.03, 0.1, 0.3]
    for round_number in range(20):
        late = head_starts[round_number % len(head_starts)]
        data = f"shared content {round_number}".encode() * 2000  # beyond the inline limit: data/ and finish
        put_large(first, f"race/a{round_number}", data)
        results: dict[str, int] = {}

        def delete(number: int = round_number, results: dict[str, int] = results, late: float = late) -> None:
            time.sleep(late if number % 2 else 0)
            results["delete"] = first.delete(B + f"object/race/a{number}").status_code

        upload_id = new_id()  # the bytes go up first: the finish (which publishes) races the delete
        create(second, f"race/b{round_number}", data, upload_id, inline=False)
        second.put(B + f"data/race/b{round_number}", params={"uploadId": upload_id, "offset": 0}, data=data)

        def publish(
            number: int = round_number, upload: str = upload_id, results: dict[str, int] = results, late: float = late
        ) -> None:
            time.sleep(0 if number % 2 else late)
            answer = second.post(B + f"finish-upload/race/b{number}", json={"uploadId": upload})
            results["publish"] = answer.status_code

        threads = [threading.Thread(target=delete), threading.Thread(target=publish)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results["delete"] == 200 and results["publish"] in (200, 503), results
        outcomes[results["publish"]] += 1
        name = f"race/b{round_number}"
        if results["publish"] == 200:
            assert download(first, name).content == data and download(second, name).content == data
        else:
            assert second.get(B + "metadata/" + quote(name)).status_code == 404
    assert outcomes[200] > 0, outcomes
