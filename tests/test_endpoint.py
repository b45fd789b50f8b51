from __future__ import annotations

import pytest

from closeup_ops.endpoint import REGION_CODES, is_serverless, parse


def test_guide_endpoint_is_serverless_in_ap_south_1():
    ep = parse("demo-du95w6.serverless.aps1.cache.amazonaws.com")
    assert ep.serverless and ep.aws
    assert ep.region == "ap-south-1"
    assert ep.name_hint == "demo"


@pytest.mark.parametrize(
    "host,serverless,region,hint",
    [
        ("master.demo.abc123.use1.cache.amazonaws.com", False, "us-east-1", "demo"),
        ("clustercfg.demo.abc123.euw1.cache.amazonaws.com", False, "eu-west-1", "demo"),
        ("demo-001.abc123.0001.apse2.cache.amazonaws.com", False, "ap-southeast-2", "demo-001"),
        ("my-cache-x1y2z3.serverless.usw2.cache.amazonaws.com", True, "us-west-2", "my-cache"),
        ("c-abc.serverless.cnn1.cache.amazonaws.com.cn", True, "cn-north-1", "c"),
        ("localhost", False, None, None),
        ("10.0.1.5", False, None, None),
    ],
)
def test_parse(host, serverless, region, hint):
    ep = parse(host)
    assert (ep.serverless, ep.region, ep.name_hint) == (serverless, region, hint)


def test_region_table_is_complete_and_consistent():
    assert len(REGION_CODES) >= 35
    assert len(set(REGION_CODES.values())) == len(REGION_CODES)
    assert REGION_CODES["aps1"] == "ap-south-1"


def test_is_serverless_is_case_insensitive():
    assert is_serverless("DEMO-DU95W6.SERVERLESS.APS1.CACHE.AMAZONAWS.COM")
