"""The password KDF: salted scrypt, parameters in the hash, nothing matches a missing hash."""

from __future__ import annotations

import pytest

from oaiod.hub.passwords import MAX_PASSWORD_BYTES, hash_password, verify_password


def test_hash_and_verify() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second  # a fresh salt each time
    assert first.startswith("scrypt$16384$8$1$")
    assert "correct horse" not in first
    assert verify_password("correct horse", first)
    assert not verify_password("correct horsE", first)


@pytest.mark.parametrize("stored", [None, "", "md5$abc", "scrypt$x$8$1$AA==$AA==", "scrypt$16384$8$1$!!$??"])
def test_broken_or_missing_hashes_never_match(stored: str | None) -> None:
    assert not verify_password("anything", stored)


def test_limits() -> None:
    with pytest.raises(ValueError):
        hash_password("")
    with pytest.raises(ValueError):
        hash_password("x" * (MAX_PASSWORD_BYTES + 1))
    assert not verify_password("x" * (MAX_PASSWORD_BYTES + 1), hash_password("pw"))
