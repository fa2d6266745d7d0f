"""The one rule for requests that write by cookie or write the cookie (daemon.api.dependencies.from_the_ui)."""
import pytest

from daemon.api.dependencies import from_the_ui


@pytest.mark.parametrize("headers, refused_because", [
    ({"x-argus-ui": "1", "sec-fetch-site": "same-origin"}, None),  # the UI's own fetch
    ({"x-argus-ui": "1"}, None),  # a browser without Fetch Metadata: the header is the defence
    ({}, "X-Argus-UI"),  # a plain form from anywhere
    ({"origin": "https://evil.example", "sec-fetch-site": "cross-site"}, "X-Argus-UI"),
    ({"x-argus-ui": "0"}, "X-Argus-UI"),
    ({"x-argus-ui": "1", "sec-fetch-site": "cross-site"}, "cross-site"),
    ({"x-argus-ui": "1", "sec-fetch-site": "same-site"}, "same-site"),  # a sibling subdomain is another site
    ({"x-argus-ui": "1", "sec-fetch-site": "none"}, "none"),
])
def test_only_the_uis_own_pages_may_use_or_set_the_session(headers, refused_because):
    refused = from_the_ui(headers)
    if refused_because is None:
        assert refused is None
    else:
        assert refused is not None and refused_because in refused
