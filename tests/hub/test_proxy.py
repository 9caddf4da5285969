"""Which forwarded addresses the hub believes (``oaiod.hub.proxy``), without a server: the parsing rules alone."""

from __future__ import annotations

import pytest

from oaiod.hub.proxy import TrustedProxies, parse_trusted_proxies


def test_client_is_the_rightmost_address_no_trusted_proxy_wrote() -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "::1"])
    assert "10.1.2.3" in proxies and "::1" in proxies and "::ffff:10.0.0.1" in proxies
    assert "127.0.0.1" not in proxies and "11.0.0.1" not in proxies and "not an ip" not in proxies
    # the client may write anything left of what the proxy appended
    assert proxies.client("10.0.0.1", "1.2.3.4, 198.51.100.7") == "198.51.100.7"
    assert proxies.client("10.0.0.1", "198.51.100.7, 10.0.0.2") == "198.51.100.7"
    assert proxies.client("10.0.0.1", " 2001:db8::5 ") == "2001:db8::5"
    # only trusted hops: the leftmost of them is as far as anyone vouches
    assert proxies.client("10.0.0.1", "10.0.0.3, 10.0.0.2") == "10.0.0.3"
    # garbage ends the walk at the last trusted hop, never becomes the client
    assert proxies.client("10.0.0.1", "198.51.100.7, evil") == "10.0.0.1"
    assert proxies.client("10.0.0.1", "evil, 10.0.0.2") == "10.0.0.2"
    assert not TrustedProxies([])


@pytest.mark.parametrize("entry", ["", "localhost", "10.0.0.0/33", "1.2.3.4.5"])
def test_a_bad_proxy_entry_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="neither an IP address nor a network"):
        parse_trusted_proxies([entry])
