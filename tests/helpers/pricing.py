"""Price List API documents shaped like GetProducts' answer: `PriceList` is a list of JSON
strings, one product each, with its attributes and its OnDemand (and, for nodes, Reserved)
terms; prices are strings of USD per unit (AWS Price List API, "Reading the price list")."""

from __future__ import annotations

import json

SERVICE = "AmazonElastiCache"
ON_DEMAND = "JRTCKXETXF"  # the Price List's offer term code for on-demand
RATE = "6YS6EN2CT7"
LOCATION = {"us-east-1": "US East (N. Virginia)", "ap-south-1": "Asia Pacific (Mumbai)"}
PREFIX = {"us-east-1": "USE1", "ap-south-1": "APS3"}


def _term(sku: str, code: str, usd: str, unit: str, description: str) -> dict:
    return {
        f"{sku}.{code}": {
            "offerTermCode": code,
            "sku": sku,
            "effectiveDate": "2026-11-01T00:00:00Z",
            "priceDimensions": {
                f"{sku}.{code}.{RATE}": {
                    "rateCode": f"{sku}.{code}.{RATE}",
                    "description": description,
                    "beginRange": "0",
                    "endRange": "Inf",
                    "unit": unit,
                    "pricePerUnit": {"USD": usd},
                    "appliesTo": [],
                }
            },
            "termAttributes": {},
        }
    }


def _doc(sku: str, family: str, attrs: dict, terms: dict) -> str:
    return json.dumps(
        {
            "product": {"productFamily": family, "attributes": attrs, "sku": sku},
            "serviceCode": SERVICE,
            "terms": terms,
            "version": "20261101000000",
            "publicationDate": "2026-11-01T00:00:00Z",
        }
    )


def serverless_products(
    region: str, engine: str, gb_hour: str, ecpu: str, ecpu_unit: str = "ECPU"
) -> list[str]:
    """Data stored (CachedData, GB-Hours) and ECPUs (ElastiCacheProcessingUnits)."""
    base = {
        "servicecode": SERVICE,
        "location": LOCATION[region],
        "locationType": "AWS Region",
        "regionCode": region,
        "cacheEngine": engine,
        "servicename": "Amazon ElastiCache",
    }
    p = PREFIX[region]
    stored = {
        **base,
        "usagetype": f"{p}-ElastiCache:{engine}-CachedData",
        "operation": "CachedData",
    }
    ecpus = {**base, "usagetype": f"{p}-ElastiCache:{engine}-ElastiCacheProcessingUnits"}
    return [
        _doc(
            f"S{engine[:3].upper()}STORE",
            "ElastiCache Serverless",
            stored,
            {
                "OnDemand": _term(
                    f"S{engine[:3].upper()}STORE",
                    ON_DEMAND,
                    gb_hour,
                    "GB-Hours",
                    f"{engine} serverless data stored",
                )
            },
        ),
        _doc(
            f"S{engine[:3].upper()}ECPU",
            "ElastiCache Serverless",
            ecpus,
            {
                "OnDemand": _term(
                    f"S{engine[:3].upper()}ECPU",
                    ON_DEMAND,
                    ecpu,
                    ecpu_unit,
                    f"{engine} serverless ECPUs",
                )
            },
        ),
    ]


def node_products(region: str, engine: str, nodes: dict[str, tuple[str, str]]) -> list[str]:
    """{instanceType: (USD per hour, "3.09 GiB")}; each with a 1-year reserved term too,
    which must not be taken for the on-demand price."""
    out = []
    for i, (node_type, (usd, memory)) in enumerate(sorted(nodes.items())):
        sku = f"N{engine[:3].upper()}{i:04d}"
        attrs = {
            "servicecode": SERVICE,
            "location": LOCATION[region],
            "locationType": "AWS Region",
            "regionCode": region,
            "instanceType": node_type,
            "memory": memory,
            "cacheEngine": engine,
            "usagetype": f"{PREFIX[region]}-NodeUsage:{node_type}",
            "operation": f"CreateCacheCluster:{engine}",
            "currentGeneration": "Yes",
        }
        terms = {
            "OnDemand": _term(sku, ON_DEMAND, usd, "Hrs", f"${usd} per {engine} {node_type}"),
            "Reserved": _term(sku, "HU7G6KETJZ", "0.0010000000", "Hrs", "reserved applied"),
        }
        out.append(_doc(sku, "Cache Instance", attrs, terms))
    return out


def filters(region: str, engine: str, family: str) -> list[dict[str, str]]:
    return [
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
        {"Type": "TERM_MATCH", "Field": "cacheEngine", "Value": engine},
        {"Type": "TERM_MATCH", "Field": "productFamily", "Value": family},
    ]


def add_answers(stub, region: str, engine: str, serverless: list[str], nodes: list[str]) -> None:
    """The two GetProducts calls `cost` makes for one engine, in order."""
    for family, docs in (("ElastiCache Serverless", serverless), ("Cache Instance", nodes)):
        stub.add_response(
            "get_products",
            {"FormatVersion": "aws_v1", "PriceList": docs},
            {"ServiceCode": SERVICE, "Filters": filters(region, engine, family), "MaxResults": 100},
        )
