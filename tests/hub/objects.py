"""Object dicts as the published client posts them, for the hub tests."""

from __future__ import annotations

from typing import Any

from oaiod.model import OaiObject, now_stamp, object_id


def new_object(user: str, name: str = "note", **values: Any) -> dict[str, Any]:
    """An object dict as the published client posts it to ``register/``."""
    stamp = now_stamp()
    values = {"_name": name, **values}
    oaio_id = object_id(user, "dev1", "testapp", stamp, values)
    return OaiObject(oaio_id, stamp, "", values, {}, "Local", user, "dev1", "testapp", "C").to_dict()


def next_version(stored: dict[str, Any], **values: Any) -> dict[str, Any]:
    """The object the client posts to ``upload/`` after changing ``stored``."""
    return {
        **stored,
        "server_stamp": stored["client_stamp"],
        "server_values": stored["client_values"],
        "client_stamp": now_stamp(),
        "client_values": {**stored["client_values"], **values},
    }
