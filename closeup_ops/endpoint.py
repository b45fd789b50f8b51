"""What an ElastiCache endpoint name says: serverless or not, the region, the reader port.

Names look like:
  demo-du95w6.serverless.aps1.cache.amazonaws.com          (serverless; reader on 6380)
  master.demo.abc123.use1.cache.amazonaws.com              (replication group primary)
  clustercfg.demo.abc123.use1.cache.amazonaws.com          (cluster-mode configuration)
  demo-0001-001.demo.abc123.use1.cache.amazonaws.com       (a node, in-transit encryption on)
  demo.abc123.ng.0001.use1.cache.amazonaws.com             (primary, encryption off)
  demo-001.abc123.0001.use1.cache.amazonaws.com            (a node, encryption off)
The label before `cache.amazonaws.com` is AWS's short region code (`cache.amazonaws.com.cn`
in China). The codes are not all derived the same way: ap-northeast-1 is `apne1` but
ap-northeast-2 and -3 are `apn2` and `apn3`, cn-northwest-1 is `cnw1` (tests/test_endpoint.py
checks the table against endpoint names seen in the wild).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SERVERLESS_READER_PORT = 6380
DEFAULT_PORT = 6379

REGION_CODES: dict[str, str] = {
    "use1": "us-east-1",
    "use2": "us-east-2",
    "usw1": "us-west-1",
    "usw2": "us-west-2",
    "usgw1": "us-gov-west-1",
    "usge1": "us-gov-east-1",
    "afs1": "af-south-1",
    "ape1": "ap-east-1",
    "ape2": "ap-east-2",
    "aps1": "ap-south-1",
    "aps2": "ap-south-2",
    "apse1": "ap-southeast-1",
    "apse2": "ap-southeast-2",
    "apse3": "ap-southeast-3",
    "apse4": "ap-southeast-4",
    "apse5": "ap-southeast-5",
    "apse6": "ap-southeast-6",
    "apse7": "ap-southeast-7",
    "apne1": "ap-northeast-1",
    "apn2": "ap-northeast-2",
    "apne2": "ap-northeast-2",  # not seen in real names; kept as an alias
    "apn3": "ap-northeast-3",
    "apne3": "ap-northeast-3",  # not seen in real names; kept as an alias
    "cac1": "ca-central-1",
    "caw1": "ca-west-1",
    "cnn1": "cn-north-1",
    "cnw1": "cn-northwest-1",
    "euc1": "eu-central-1",
    "euc2": "eu-central-2",
    "euw1": "eu-west-1",
    "euw2": "eu-west-2",
    "euw3": "eu-west-3",
    "eun1": "eu-north-1",
    "eus1": "eu-south-1",
    "eus2": "eu-south-2",
    "ilc1": "il-central-1",
    "mec1": "me-central-1",
    "mes1": "me-south-1",
    "mxc1": "mx-central-1",
    "sae1": "sa-east-1",
}

# Patterns stay strings until first use (re caches the compiled form): compiling at import
# would sit on every command's start-up path.
_AWS_SUFFIX = r"\.([a-z0-9]+)\.cache\.amazonaws\.com(\.cn)?\.?$"
_SERVERLESS = (
    r"^(?P<label>[a-z0-9-]+)\.serverless\.(?P<code>[a-z0-9]+)\.cache\.amazonaws\.com(\.cn)?\.?$"
)


@dataclass(frozen=True)
class Endpoint:
    host: str
    aws: bool  # an ElastiCache name at all
    serverless: bool
    region_code: str | None
    region: str | None
    # the cache the name belongs to: the replication group id (node, primary, reader and
    # configuration endpoints), the serverless cache's name or the cache cluster id;
    # lower-case, as AWS stores ids. A reading of the name, never trusted alone.
    name_hint: str | None


def parse(host: str) -> Endpoint:
    host = host.strip().lower()
    suffix = re.search(_AWS_SUFFIX, host, re.IGNORECASE)
    code = suffix.group(1) if suffix else None
    serverless = re.match(_SERVERLESS, host, re.IGNORECASE)
    hint = None
    if serverless:
        label = serverless.group("label")
        # demo-du95w6: the cache is "demo", the suffix is ElastiCache's random id
        hint = label.rsplit("-", 1)[0] if "-" in label else label
    elif suffix:
        hint = _group_of(host[: suffix.start()].split("."))
    return Endpoint(
        host=host,
        aws=suffix is not None,
        serverless=serverless is not None,
        region_code=code,
        region=REGION_CODES.get(code) if code else None,
        name_hint=hint,
    )


_ROLE_PREFIXES = ("master", "replica", "clustercfg")


def _group_of(labels: list[str]) -> str | None:
    """The replication group (or cluster) id from the labels before the region code."""
    if len(labels) == 3:
        first, second, third = labels
        if first in _ROLE_PREFIXES:  # master.demo.abc123 (encryption on)
            return second
        if third in ("clustercfg", "cfg"):  # demo.abc123.clustercfg (encryption off)
            return first
        if third.isdigit():  # demo-0001-001.abc123.0001: a node, encryption off
            return re.sub(r"(-\d{4})?-\d{3}$", "", first)
        return second  # demo-0001-001.demo.abc123: a node, encryption on
    if len(labels) == 4 and labels[2] == "ng":  # demo.abc123.ng.0001 / demo-ro.abc123.ng.0001
        return labels[0].removesuffix("-ro")
    return labels[0] if labels and labels[0] else None


def is_serverless(host: str) -> bool:
    return re.match(_SERVERLESS, host.strip(), re.IGNORECASE) is not None


def region_of(host: str) -> str | None:
    return parse(host).region


class NotAHost(ValueError):
    """Not a host name or address alone: `allowed` says what to give instead."""

    def __init__(self, allowed: str, may_hold_secret: bool = False):
        super().__init__(allowed)
        self.allowed = allowed
        self.may_hold_secret = may_hold_secret


def bare_host(text: str) -> str:
    """`text` as a host name or address alone. A URL or user@host, or host:port (as the AWS
    console shows an endpoint), raises NotAHost with the split spelled out, rather than
    being looked up and failing as 'cannot resolve'. An IPv6 address may be in brackets."""
    import ipaddress

    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "://" in text or "/" in text or "@" in text:
        raise NotAHost(
            "give the host alone; the port goes in REDIS_PORT, TLS in REDIS_TLS, the user "
            "and password in REDIS_USERNAME and REDIS_PASSWORD",
            may_hold_secret=True,
        )
    if ":" not in text:
        return text
    try:
        ipaddress.IPv6Address(text.split("%")[0])
        return text
    except ValueError:
        host, _, port = text.rpartition(":")
    if host and port.isdigit():
        raise NotAHost(f"the host alone ({host}) and the port in REDIS_PORT ({port})")
    raise NotAHost("a host name or address")
