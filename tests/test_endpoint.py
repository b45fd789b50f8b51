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
        ("demo-001.abc123.0001.apse2.cache.amazonaws.com", False, "ap-southeast-2", "demo"),
        ("demo-0001-001.demo.abc123.use1.cache.amazonaws.com", False, "us-east-1", "demo"),
        ("Demo-0002-001.Demo.abc123.use1.cache.amazonaws.com", False, "us-east-1", "demo"),
        ("shop-002.shop.abc123.euw1.cache.amazonaws.com", False, "eu-west-1", "shop"),
        ("replica.demo.abc123.use1.cache.amazonaws.com", False, "us-east-1", "demo"),
        ("demo.abc123.ng.0001.use1.cache.amazonaws.com", False, "us-east-1", "demo"),
        ("demo-ro.abc123.ng.0001.use1.cache.amazonaws.com", False, "us-east-1", "demo"),
        ("demo.abc123.clustercfg.euc1.cache.amazonaws.com", False, "eu-central-1", "demo"),
        ("my-cache-x1y2z3.serverless.usw2.cache.amazonaws.com", True, "us-west-2", "my-cache"),
        ("c-abc.serverless.cnn1.cache.amazonaws.com.cn", True, "cn-north-1", "c"),
        ("localhost", False, None, None),
        ("10.0.1.5", False, None, None),
    ],
)
def test_parse(host, serverless, region, hint):
    ep = parse(host)
    assert (ep.serverless, ep.region, ep.name_hint) == (serverless, region, hint)


# Endpoint names as they appear in public code and docs (cache names and ids replaced; the
# shape and the region code kept). Regions whose code is not derived like the others:
# ap-northeast-2/3 are apn2/apn3 while ap-northeast-1 is apne1; cn-northwest-1 is cnw1.
REAL_NAMES = {
    "app.x1y2z3.ng.0001.apn2.cache.amazonaws.com": "ap-northeast-2",
    "clustercfg.app.x1y2z3.apn2.cache.amazonaws.com": "ap-northeast-2",
    "app.x1y2z3.ng.0001.apn3.cache.amazonaws.com": "ap-northeast-3",
    "app-ca-1.x1y2z3.0001.apne1.cache.amazonaws.com": "ap-northeast-1",
    "app.x1y2z3.0001.cnw1.cache.amazonaws.com.cn": "cn-northwest-1",
    "app.x1y2z3.ng.0001.cnw1.cache.amazonaws.com.cn": "cn-northwest-1",
    "app-x1y2.serverless.cnw1.cache.amazonaws.com.cn": "cn-northwest-1",
    "app-001.x1y2z3.0001.cnn1.cache.amazonaws.com.cn": "cn-north-1",
    "app.x1y2z3.clustercfg.cnn1.cache.amazonaws.com.cn": "cn-north-1",
    "app.x1y2z3.0001.apse1.cache.amazonaws.com": "ap-southeast-1",
    "master.app.x1y2z3.apse1.cache.amazonaws.com": "ap-southeast-1",
    "app-0001-001.x1y2z3.0001.aps1.cache.amazonaws.com": "ap-south-1",
    "master.app.x1y2z3.aps1.cache.amazonaws.com": "ap-south-1",
    "app-0001-001.app.x1y2z3.euc1.cache.amazonaws.com": "eu-central-1",
    "app-x1y2z3.serverless.euc1.cache.amazonaws.com": "eu-central-1",
    "app.x1y2z3.clustercfg.euw1.cache.amazonaws.com": "eu-west-1",
    "app.x1y2z3.ng.0001.sae1.cache.amazonaws.com": "sa-east-1",
    "master.app.x1y2z3.sae1.cache.amazonaws.com": "sa-east-1",
    "app.x1y2z3.0001.use1.cache.amazonaws.com": "us-east-1",
}


@pytest.mark.parametrize("host,region", sorted(REAL_NAMES.items()))
def test_region_codes_of_real_endpoint_names(host, region):
    assert parse(host).region == region


def test_region_table_is_complete_and_consistent():
    assert len(set(REGION_CODES.values())) >= 35
    assert REGION_CODES["aps1"] == "ap-south-1"
    assert "cnnw1" not in REGION_CODES  # never an ElastiCache code


def test_is_serverless_is_case_insensitive():
    assert is_serverless("DEMO-DU95W6.SERVERLESS.APS1.CACHE.AMAZONAWS.COM")
