"""moto with the ElastiCache Serverless APIs it lacks, for `closeup-ops sandbox`.

One process: moto's own WSGI app behind a small front that answers seven actions itself -
DescribeServerlessCaches, DescribeServerlessCacheSnapshots, CreateServerlessCacheSnapshot,
DeleteServerlessCacheSnapshot, CreateServerlessCache (SnapshotArnsToRestore),
DeleteServerlessCache, and DescribeEvents (which moto lacks) - in the AWS query protocol.
Requests are read and responses written through botocore's own service model (member names,
list member names, timestamps), so a botocore client parses every field. Everything else
goes to moto unchanged.

New caches and snapshots are `creating` for `--delay` seconds, then `available`; deleted
ones are `deleting` for the same time, then gone. The sandbox registers its stand-in cache
(its real endpoint, security groups, subnets) with POST /_closeup/serverless-caches (JSON),
in the spirit of moto's own /moto-api/.

    python -m closeup_ops.local.aws_serverless --port 5000 [--delay 1.0]
"""

from __future__ import annotations

import datetime
import io
import json
import re
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from closeup_ops.local.aws_query import Fault, error_xml, parse_params, response_xml

ACCOUNT = "123456789012"  # moto's default account
ADOPT_PATH = "/_closeup/serverless-caches"
ACTIONS = (
    "DescribeServerlessCaches",
    "DescribeServerlessCacheSnapshots",
    "CreateServerlessCacheSnapshot",
    "DeleteServerlessCacheSnapshot",
    "CreateServerlessCache",
    "DeleteServerlessCache",
    "DescribeEvents",  # moto has none; answered from what happened here (serverless)
)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def region_code(region: str) -> str:
    from closeup_ops.endpoint import REGION_CODES

    for code, name in REGION_CODES.items():
        if name == region:
            return code
    return "use1"


class ServerlessState:
    """The serverless caches and snapshots of one account, all regions in one map."""

    def __init__(self, delay: float = 1.0):
        self.delay = delay
        self.caches: dict[str, dict[str, Any]] = {}
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def _event(self, region: str, cache: str, message: str) -> None:
        self.events.append(
            {
                "SourceIdentifier": cache,
                "SourceType": "serverless-cache",
                "Message": message,
                "Date": _now(),
                "_region": region,
                "_seq": len(self.events),  # order within one second
            }
        )

    # --- status clock ---------------------------------------------------------------

    def _tick(self) -> None:
        now = time.monotonic()
        for table in (self.caches, self.snapshots):
            for name, item in list(table.items()):
                due = item.get("_due")
                if due is None or now < due:
                    continue
                if item["Status"] == "deleting":
                    del table[name]
                else:
                    item["Status"], item["_due"] = "available", None
                self._on_done(item)

    def _on_done(self, item: dict[str, Any]) -> None:
        """The event AWS records when a change completes."""
        gone = item["Status"] == "deleting"
        if "ServerlessCacheSnapshotName" in item:
            cache = item["ServerlessCacheConfiguration"]["ServerlessCacheName"]
            what = "deleted" if gone else "completed"
            message = f"Snapshot {item['ServerlessCacheSnapshotName']} {what}"
        else:
            cache = item["ServerlessCacheName"]
            message = "Serverless cache deleted" if gone else "Serverless cache created"
        self._event(item["_region"], cache, message)

    def _later(self) -> float:
        return time.monotonic() + self.delay

    # --- actions ----------------------------------------------------------------------

    def adopt(self, desc: dict[str, Any]) -> dict[str, Any]:
        """Register an existing, available cache (the sandbox's stand-in)."""
        name = desc["ServerlessCacheName"]
        region = desc.pop("Region", "us-east-1")
        cache = {
            "Description": "",
            "Engine": "redis",
            "MajorEngineVersion": "7",
            "FullEngineVersion": "7.1",
            "SnapshotRetentionLimit": 1,
            "DailySnapshotTime": "03:00",
            "NetworkType": "ipv4",
            **desc,
            "CreateTime": _now(),
            "Status": "available",
            "ARN": self._arn(region, "serverlesscache", name),
            "_region": region,
            "_due": None,
        }
        with self.lock:
            self.caches[name] = cache
        return cache

    def _arn(self, region: str, kind: str, name: str) -> str:
        return f"arn:aws:elasticache:{region}:{ACCOUNT}:{kind}:{name}"

    def _cache(self, name: str, region: str) -> dict[str, Any]:
        cache = self.caches.get(name)
        if cache is None or cache["_region"] != region:
            raise Fault("ServerlessCacheNotFoundFault", f"Serverless cache {name} not found", 404)
        return cache

    def _snapshot(self, name: str, region: str) -> dict[str, Any]:
        snap = self.snapshots.get(name)
        if snap is None or snap["_region"] != region:
            raise Fault("ServerlessCacheSnapshotNotFoundFault", f"Snapshot {name} not found", 404)
        return snap

    def call(self, action: str, params: dict[str, Any], region: str) -> dict[str, Any]:
        with self.lock:
            self._tick()
            return getattr(self, "_" + re.sub(r"(?<!^)([A-Z])", r"_\1", action).lower())(
                params, region
            )

    def _describe_events(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        """Newest first, within StartTime/EndTime (or the last Duration minutes, default 60)."""
        end = _parse_time(p.get("EndTime")) or _now() + datetime.timedelta(seconds=1)
        start = _parse_time(p.get("StartTime")) or end - datetime.timedelta(
            minutes=int(p.get("Duration") or 60)
        )
        found = [
            e
            for e in self.events
            if e["_region"] == region
            and start <= e["Date"] <= end
            and p.get("SourceIdentifier") in (None, e["SourceIdentifier"])
            and p.get("SourceType") in (None, e["SourceType"])
        ]
        return {"Events": sorted(found, key=lambda e: (e["Date"], e["_seq"]), reverse=True)}

    def _describe_serverless_caches(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        if p.get("ServerlessCacheName"):
            return {"ServerlessCaches": [self._cache(p["ServerlessCacheName"], region)]}
        found = [c for c in self.caches.values() if c["_region"] == region]
        return {"ServerlessCaches": sorted(found, key=lambda c: c["ServerlessCacheName"])}

    def _describe_serverless_cache_snapshots(
        self, p: dict[str, Any], region: str
    ) -> dict[str, Any]:
        if p.get("ServerlessCacheSnapshotName"):
            found = [self._snapshot(p["ServerlessCacheSnapshotName"], region)]
        else:
            found = [s for s in self.snapshots.values() if s["_region"] == region]
        if p.get("ServerlessCacheName"):
            self._cache(p["ServerlessCacheName"], region)
            found = [
                s
                for s in found
                if s["ServerlessCacheConfiguration"]["ServerlessCacheName"]
                == p["ServerlessCacheName"]
            ]
        if p.get("SnapshotType"):
            found = [s for s in found if s["SnapshotType"] == p["SnapshotType"]]
        return {"ServerlessCacheSnapshots": sorted(found, key=lambda s: s["CreateTime"])}

    def _create_serverless_cache_snapshot(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        name = _required(p, "ServerlessCacheSnapshotName")
        cache = self._cache(_required(p, "ServerlessCacheName"), region)
        if cache["Status"] != "available":
            raise Fault(
                "InvalidServerlessCacheStateFault",
                f"Serverless cache {cache['ServerlessCacheName']} is {cache['Status']}",
            )
        if name in self.snapshots:
            raise Fault(
                "ServerlessCacheSnapshotAlreadyExistsFault", f"Snapshot {name} already exists"
            )
        self._event(region, cache["ServerlessCacheName"], f"Snapshot {name} started")
        return {"ServerlessCacheSnapshot": self._new_snapshot(name, cache, region, "manual")}

    def _new_snapshot(
        self, name: str, cache: dict[str, Any], region: str, kind: str
    ) -> dict[str, Any]:
        snap = {
            "ServerlessCacheSnapshotName": name,
            "ARN": self._arn(region, "serverlesscachesnapshot", name),
            "SnapshotType": kind,
            "Status": "creating",
            "CreateTime": _now(),
            "ExpiryTime": _now() + datetime.timedelta(days=7),
            "BytesUsedForCache": str(cache.get("_bytes", 1048576)),
            "ServerlessCacheConfiguration": {
                "ServerlessCacheName": cache["ServerlessCacheName"],
                "Engine": cache["Engine"],
                "MajorEngineVersion": cache["MajorEngineVersion"],
            },
            "_region": region,
            "_due": self._later(),
        }
        self.snapshots[name] = snap
        return snap

    def _delete_serverless_cache_snapshot(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        snap = self._snapshot(_required(p, "ServerlessCacheSnapshotName"), region)
        if snap["Status"] != "available":
            raise Fault(
                "InvalidServerlessCacheSnapshotStateFault",
                f"Snapshot {snap['ServerlessCacheSnapshotName']} is {snap['Status']}",
            )
        snap["Status"], snap["_due"] = "deleting", self._later()
        return {"ServerlessCacheSnapshot": snap}

    def _create_serverless_cache(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        name = _required(p, "ServerlessCacheName")
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,39}", name) or "--" in name or name[-1] == "-":
            raise Fault(
                "InvalidParameterValue",
                "ServerlessCacheName must be 1-40 lowercase letters, digits or hyphens, "
                "start with a letter, and have no two consecutive hyphens",
            )
        engine = _required(p, "Engine")
        if name in self.caches:
            raise Fault("ServerlessCacheAlreadyExistsFault", f"Serverless cache {name} exists")
        source = None
        for arn in p.get("SnapshotArnsToRestore") or []:
            match = [s for s in self.snapshots.values() if s["ARN"] == arn]
            if not match or match[0]["Status"] != "available":
                raise Fault("InvalidParameterValue", f"snapshot {arn} is not an available snapshot")
            source = match[0]
        address = f"{name}-{secrets.token_hex(3)}.serverless.{region_code(region)}"
        address += ".cache.amazonaws.com"
        major = p.get("MajorEngineVersion") or (
            source["ServerlessCacheConfiguration"]["MajorEngineVersion"] if source else "7"
        )
        cache = {
            "ServerlessCacheName": name,
            "Description": p.get("Description", ""),
            "CreateTime": _now(),
            "Status": "creating",
            "Engine": engine,
            "MajorEngineVersion": major,
            "FullEngineVersion": f"{major}.1" if major.isdigit() else major,
            "SecurityGroupIds": list(p.get("SecurityGroupIds") or []),
            "Endpoint": {"Address": address, "Port": 6379},
            "ReaderEndpoint": {"Address": address, "Port": 6380},
            "ARN": self._arn(region, "serverlesscache", name),
            "SubnetIds": list(p.get("SubnetIds") or []),
            "SnapshotRetentionLimit": int(p.get("SnapshotRetentionLimit") or 0),
            "DailySnapshotTime": p.get("DailySnapshotTime") or "03:00",
            "NetworkType": "ipv4",
            "_region": region,
            "_due": self._later(),
        }
        if p.get("UserGroupId"):
            cache["UserGroupId"] = p["UserGroupId"]
        self.caches[name] = cache
        return {"ServerlessCache": cache}

    def _delete_serverless_cache(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        cache = self._cache(_required(p, "ServerlessCacheName"), region)
        if cache["Status"] != "available":
            raise Fault(
                "InvalidServerlessCacheStateFault",
                f"Serverless cache {cache['ServerlessCacheName']} is {cache['Status']}",
            )
        final = p.get("FinalSnapshotName")
        if final:
            if final in self.snapshots:
                raise Fault("ServerlessCacheSnapshotAlreadyExistsFault", f"Snapshot {final} exists")
            self._new_snapshot(final, cache, region, "manual")
        cache["Status"], cache["_due"] = "deleting", self._later()
        return {"ServerlessCache": cache}


def _parse_time(value: str | None) -> datetime.datetime | None:
    """A query-protocol timestamp (ISO 8601, as botocore sends it)."""
    if not value:
        return None
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


def _required(p: dict[str, Any], name: str) -> Any:
    if not p.get(name):
        raise Fault("MissingParameter", f"The request must contain the parameter {name}")
    return p[name]


def _region(environ: dict[str, Any]) -> str:
    """The region from the SigV4 credential scope (AKID/date/REGION/service/aws4_request)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    match = re.search(r"Credential=[^/]+/\d+/([a-z0-9-]+)/", auth)
    return match.group(1) if match else "us-east-1"


class ServerlessFront:
    """WSGI: the six serverless actions here, everything else to moto's app."""

    def __init__(self, backend: Any, state: ServerlessState):
        self.backend, self.state = backend, state

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") != "POST":
            return self.backend(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if environ.get("PATH_INFO") == ADOPT_PATH:
            cache = self.state.adopt(json.loads(body))
            return _reply(start_response, 200, json.dumps({"ARN": cache["ARN"]}), "json")
        if b"Action=" not in body:
            return self.backend(environ, start_response)
        form = parse_qs(body.decode(), keep_blank_values=True)
        action = (form.get("Action") or [""])[-1]
        if action not in ACTIONS:
            return self.backend(environ, start_response)
        try:
            params = parse_params(action, form)
            result = self.state.call(action, params, _region(environ))
        except Fault as fault:
            return _reply(start_response, fault.status, error_xml(fault))
        return _reply(start_response, 200, response_xml(action, result))


def _reply(start_response: Any, status: int, text: str, kind: str = "xml") -> list[bytes]:
    data = text.encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    ctype = "application/json" if kind == "json" else "text/xml"
    start_response(
        f"{status} {reason}", [("Content-Type", ctype), ("Content-Length", str(len(data)))]
    )
    return [data]


def make_app(delay: float = 1.0) -> ServerlessFront:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return ServerlessFront(DomainDispatcherApplication(create_backend_app), ServerlessState(delay))


def main(argv: list[str] | None = None) -> None:
    import argparse
    import signal
    import sys

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds in creating/deleting")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(
        args.host,
        args.port,
        make_app(args.delay),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
