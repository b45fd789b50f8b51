"""A local cluster filled for bench_keyspace.py --cluster: every key in a slot its node owns.

Each primary fills itself with a Lua loop (no key crosses the network): key i is
`<ns>:{<tag>}:<i>` where <tag> is a short string chosen (here, by CRC16) to hash to one of
the node's own slots, cycling over all of them. 10,000 keys per EVAL, so no call blocks the
node for long; the six primaries load at once.

Per primary: `per_node // 2` `otp:` keys (the even ones with a 3600 s TTL) and as many
`video:` keys; values of 8 to 104 bytes, plus every 100,000th key a 20 KB value (the
biggest keys, so `--summary --top` has something to find).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from redis.crc import key_slot

CHUNK = 10_000
BIG_EVERY = 100_000
BIG_BYTES = 20_000

FILL = """
local ns, first, last, ttl_even = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local ntags = #ARGV - 4
for i = first, last do
  local key = ns .. ':{' .. ARGV[5 + (i % ntags)] .. '}:' .. i
  local size = 8 + (i % 97)
  if i % %BIG% == 0 then size = %BIGBYTES% end
  if ttl_even == '1' and i % 2 == 0 then
    redis.call('SET', key, string.rep('x', size), 'EX', 3600)
  else
    redis.call('SET', key, string.rep('x', size))
  end
end
return last - first + 1
""".replace("%BIG%", str(BIG_EVERY)).replace("%BIGBYTES%", str(BIG_BYTES))


def slot_tags() -> dict[int, str]:
    """A short tag for every slot: key_slot('{tag}') == slot."""
    tags: dict[int, str] = {}
    i = 0
    while len(tags) < 16384:
        tag = format(i, "x")
        tags.setdefault(key_slot(tag.encode()), tag)
        i += 1
    return tags


def owned_slots(client: Any) -> list[int]:
    """The slots this node serves, from its own CLUSTER SLOTS and CLUSTER MYID."""
    me = client.execute_command("CLUSTER", "MYID")
    me = me.decode() if isinstance(me, bytes) else me
    out = []
    for entry in client.execute_command("CLUSTER", "SLOTS"):
        node_id = entry[2][2]
        node_id = node_id.decode() if isinstance(node_id, bytes) else node_id
        if node_id == me:
            out.extend(range(int(entry[0]), int(entry[1]) + 1))
    return out


def fill_node(host: str, port: int, per_node: int, tags: dict[int, str]) -> int:
    import redis

    # No client-side timeout (redis-py's default is 5 s, then a retry that meets BUSY).
    client = redis.Redis(host=host, port=port, socket_timeout=None)
    mine = [tags[s] for s in owned_slots(client)]
    sha = client.script_load(FILL)
    half = per_node // 2
    done = 0
    for ns, ttl in (("otp", "1"), ("video", "0")):
        for first in range(0, half, CHUNK):
            last = min(half, first + CHUNK) - 1
            done += _retry_busy(client.evalsha, sha, 0, ns, first, last, ttl, *mine)
    client.close()
    return done


def _retry_busy(call: Any, *args: Any) -> Any:
    """A script still running (BUSY, seen on a saturated machine): wait, then again."""
    import redis

    for _ in range(600):
        try:
            return call(*args)
        except redis.exceptions.BusyLoadingError:
            raise
        except redis.exceptions.ResponseError as exc:
            if not str(exc).startswith("BUSY"):
                raise
            time.sleep(0.1)
    raise RuntimeError("the node stayed busy for a minute")


def fill_cluster(primaries: list[tuple[str, int]], per_node: int) -> int:
    """Fill every primary at once; returns the number of keys written."""
    tags = slot_tags()
    results: list[int] = []
    errors: list[BaseException] = []

    def run(host: str, port: int) -> None:
        try:
            results.append(fill_node(host, port, per_node, tags))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=p) for p in primaries]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(results)


def check_slots(client: Any) -> None:
    """Every key of this node lives in a slot it owns (COUNTKEYSINSLOT over its slots)."""
    pipe = client.pipeline(transaction=False)
    for slot in owned_slots(client):
        pipe.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)
    owned = sum(pipe.execute())
    total = client.dbsize()
    assert owned == total, f"{total - owned} keys outside the node's slots"


def reset_stats(clients: list[Any]) -> None:
    for c in clients:
        c.config_resetstat()


def server_usec(clients: list[Any], commands: tuple[str, ...]) -> list[int]:
    """Per node: the usec the server spent in these commands since the last reset."""
    out = []
    for c in clients:
        stats = c.info("commandstats")
        out.append(sum(stats.get(f"cmdstat_{name}", {}).get("usec", 0) for name in commands))
    return out


def calls(clients: list[Any], commands: tuple[str, ...]) -> list[int]:
    out = []
    for c in clients:
        stats = c.info("commandstats")
        out.append(sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in commands))
    return out
