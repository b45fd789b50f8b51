"""Outside CI the VPC tests skip, saying why; with CLOSEUP_OPS_REQUIRE_NETNS=1 they fail."""

from __future__ import annotations

import pytest
from helpers.netns import REQUIRE_ENV, require_netns


def no_netns() -> str:
    return "network namespaces need root (this test runs as a VPC only as root)"


def test_missing_netns_skips_with_the_reason(monkeypatch):
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="need root"):
        require_netns(no_netns)


@pytest.mark.parametrize("value", ["1", "true"])
def test_missing_netns_fails_when_required(monkeypatch, value):
    monkeypatch.setenv(REQUIRE_ENV, value)
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE_ENV}=1 .*need root"):
        require_netns(no_netns)


def test_available_netns_neither_skips_nor_fails(monkeypatch):
    monkeypatch.setenv(REQUIRE_ENV, "1")
    require_netns(lambda: None)
