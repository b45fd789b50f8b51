"""Price List answers kept on disk with the date they were fetched
($XDG_CACHE_HOME/closeup-ops/prices-REGION-ENGINE.json): `cost` asks the API at most once
a week per region and engine. Best effort: an unreadable or read-only cache is no cache."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

CACHE_DAYS = 7  # a cached Price List answer younger than this is used as is


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "closeup-ops"


def _file(region: str, engine: str) -> Path:
    return cache_dir() / f"prices-{region}-{engine}.json"


def read(region: str, engine: str, now: dt.datetime) -> dict[str, Any] | None:
    try:
        doc = json.loads(_file(region, engine).read_text())
        fetched = dt.datetime.fromisoformat(doc["fetched"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if fetched.tzinfo is None or now - fetched > dt.timedelta(days=CACHE_DAYS):
        return None
    return doc


def write(region: str, engine: str, doc: dict[str, Any]) -> None:
    path = _file(region, engine)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(path)
    except OSError:
        pass  # a read-only home: the prices were still fetched for this run
