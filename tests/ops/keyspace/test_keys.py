"""The keyspace ops without the CLI: encoding, namespaces, slot-grouped UNLINK, the raw
pipelined scan, the summary's arithmetic, TTL buckets."""

from __future__ import annotations

import base64
import json

import pytest
from helpers.keyspace import client_for, fill, unique_prefix

from closeup_ops.connect.redis import connect
from closeup_ops.ops.keyspace.delete import delete_keys, unlink_commands
from closeup_ops.ops.keyspace.encode import display, ndjson_batch, text_keys, ttl_text
from closeup_ops.ops.keyspace.keys import iter_keys
from closeup_ops.ops.keyspace.scan import NodeChannel, pack, per_key, scan_node
from closeup_ops.ops.keyspace.spec import ScanSpec, ScanStats
from closeup_ops.ops.keyspace.summary import namespace_of, summarize
from closeup_ops.ops.keyspace.ttl import _histogram, bucket_label
from closeup_ops.settings import load


def target_for(server):
    return connect(load({"host": server.host, "port": str(server.port)}))


@pytest.fixture
def prefixed(redis_plain):
    client = client_for(redis_plain)
    prefix = unique_prefix("ops")
    yield prefix, client
    for key in client.scan_iter(f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


# --- encoding ---------------------------------------------------------------------------


def test_ndjson_fast_path_and_escaping_agree_with_json():
    plain = [b"otp:1", b"otp:22"]
    assert ndjson_batch(plain) == b'{"key":"otp:1"}\n{"key":"otp:22"}\n'
    assert ndjson_batch(plain, [5, -1]) == (
        b'{"key":"otp:1","ttl_ms":5}\n{"key":"otp:22","ttl_ms":-1}\n'
    )
    odd = [b'q"uote', b"back\\slash", b"tab\tnl\n", "ünï".encode(), b"bad\xff"]
    rows = [
        json.loads(line) for line in ndjson_batch(odd, [1] * 5, [10, None, 3, 4, 5]).splitlines()
    ]
    assert [r["key"] for r in rows[:4]] == ['q"uote', "back\\slash", "tab\tnl\n", "ünï"]
    assert base64.b64decode(rows[4]["key_base64"]) == b"bad\xff"
    assert rows[1]["memory"] is None and rows[0]["memory"] == 10
    assert ndjson_batch([]) == b""


@pytest.mark.parametrize("odd", [b'"', b"\\", b"\x00", b"\n", b"\x1f", b"\x7f", b"\x80", b"\xff"])
def test_one_unsafe_byte_in_an_otherwise_plain_batch_is_escaped(odd):
    # The batch check must catch each unsafe byte on its own, not only in company.
    key = b"k" + odd + b"z"
    rows = [json.loads(line) for line in ndjson_batch([b"otp:1", key]).splitlines()]
    assert rows[0] == {"key": "otp:1"}
    if "key_base64" in rows[1]:
        assert base64.b64decode(rows[1]["key_base64"]) == key
    else:
        assert rows[1]["key"].encode() == key
    if odd not in (b'"', b"\\"):  # printable ASCII goes to a terminal raw
        line = text_keys([b"otp:1", key]).decode().splitlines()[1]
        assert line.isprintable() and line.isascii()


def test_text_never_writes_control_characters():
    out = text_keys([b"a", b"esc\x1b[2J", b"\xffbin"]).decode()
    assert "\x1b" not in out
    assert out.splitlines() == ["a", "esc\\x1b[2J", "\\xffbin"]
    assert display(b"ok:1") == "ok:1"


def test_ttl_text():
    assert ttl_text(-1) == "-1 (no expiry)" and ttl_text(-2) == "-2 (missing)"
    assert ttl_text(299_500) == "300s" and ttl_text(1) == "0s"


def test_per_key_each_interleaves_commands_key_by_key():
    from closeup_ops.ops.keyspace.scan import per_key_each

    build = per_key_each([("PTTL",), ("MEMORY", "USAGE")])
    assert build([b"a", b"bb"]) == (
        b"*2\r\n$4\r\nPTTL\r\n$1\r\na\r\n*3\r\n$6\r\nMEMORY\r\n$5\r\nUSAGE\r\n$1\r\na\r\n"
        b"*2\r\n$4\r\nPTTL\r\n$2\r\nbb\r\n*3\r\n$6\r\nMEMORY\r\n$5\r\nUSAGE\r\n$2\r\nbb\r\n"
    )
    keys = [b"a", b"x" * 1500]
    expected = b"".join(resp(b"PTTL", k) + resp(b"MEMORY", b"USAGE", k) for k in keys)
    assert build(keys) == expected


def test_per_key_packing_matches_resp():
    build = per_key("MEMORY", "USAGE")
    long_key = b"k" * 2000
    assert build([b"a", long_key]) == resp(b"MEMORY", b"USAGE", b"a") + resp(
        b"MEMORY", b"USAGE", long_key
    )


def test_pack_is_resp():
    assert pack("SET", b"k", "v") == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
    assert pack("GET", b"\xff\r\n") == b"*2\r\n$3\r\nGET\r\n$3\r\n\xff\r\n\r\n"


def resp(*args: bytes) -> bytes:
    """RESP array of bulk strings, written here from the protocol spec (not the module's pack)."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


# --- namespaces, slots, buckets ---------------------------------------------------------


@pytest.mark.parametrize(
    "key, depth, expected",
    [
        (b"otp:1", 1, b"otp"),
        (b"video:pending:9", 1, b"video"),
        (b"video:pending:9", 2, b"video:pending"),
        (b"otp:1", 2, b"otp"),
        (b"plain", 1, None),
        (b":x", 1, b""),
    ],
)
def test_namespace_of(key, depth, expected):
    assert namespace_of(key, b":", depth) == expected


def test_unlink_is_slot_grouped_in_cluster_mode():
    from redis.crc import key_slot

    keys = [f"k:{i}".encode() for i in range(300)] + [b"{tag}a", b"{tag}b"]
    payload, count = unlink_commands(keys, cluster=True)
    import hiredis

    # Parse our own RESP back: every UNLINK's keys share one slot.
    reader = hiredis.Reader()
    reader.feed(payload)
    commands = []
    while (cmd := reader.gets()) is not False:
        commands.append(cmd)
    assert len(commands) == count
    assert sorted(k for c in commands for k in c[1:]) == sorted(keys)
    assert all(len({key_slot(k) for k in c[1:]}) == 1 for c in commands)
    assert [b"{tag}a", b"{tag}b"] in [c[1:] for c in commands]
    _, standalone = unlink_commands(keys, cluster=False)
    assert standalone == 1  # up to 500 keys per UNLINK


def test_histogram_buckets():
    assert bucket_label(300, 60) == "1m-5m" and bucket_label(None, 604800) == "> 7d"
    labels = [b.label for b in _histogram([0] * 8, 0)]
    assert labels == [
        "no expiry",
        "<= 10s",
        "10s-1m",
        "1m-5m",
        "5m-30m",
        "30m-1h",
        "1h-1d",
        "1d-7d",
        "> 7d",
    ]


# --- against a real server --------------------------------------------------------------


def test_scan_node_pipelines_extras(redis_plain, prefixed):
    prefix, client = prefixed
    fill(client, prefix + ":p:{}", 2500, ttl=100)
    channel = NodeChannel("plain", client)
    try:
        batches = list(
            scan_node(
                channel,
                f"{prefix}:p:*".encode(),
                100,
                None,
                lambda keys: (per_key("PTTL")(keys), len(keys)),
            )
        )
    finally:
        channel.close()
    keys = [k for b in batches for k in b.keys]
    assert len(set(keys)) == 2500
    assert all(len(b.replies) == len(b.keys) for b in batches)
    assert all(0 < t <= 100_000 for b in batches for t in b.replies)
    assert channel.pending == 0


def test_iter_keys_limit_and_columns(redis_plain, prefixed):
    prefix, client = prefixed
    fill(client, prefix + ":c:{}", 300)
    target = target_for(redis_plain)
    stats = ScanStats()
    batches = list(
        iter_keys(
            target, ScanSpec(f"{prefix}:c:*", limit=120, count=50), stats, ttl=True, memory=True
        )
    )
    target.close()
    assert sum(len(b.keys) for b in batches) == 120 == stats.listed
    assert all(len(b.ttl_ms) == len(b.memory) == len(b.keys) for b in batches)


def test_summary_arithmetic_and_biggest_keys(redis_plain, prefixed):
    prefix, client = prefixed
    for i in range(10):
        client.set(f"{prefix}:s:{i}", "x" * 2 ** (i + 6), ex=600 if i % 2 else None)
    client.set(f"{prefix}nosep", "1")
    target = target_for(redis_plain)
    report = summarize(target, ScanSpec(f"{prefix}*"), depth=2, top=3)
    target.close()
    ns = {n.namespace: n for n in report.namespaces}
    s = ns[f"{prefix}:s"]
    assert s.keys == 10 and s.with_ttl == 5 and s.without_ttl == 5 and s.ttl_share == 0.5
    sizes = [client.memory_usage(f"{prefix}:s:{i}") for i in range(10)]
    assert s.total_bytes == sum(sizes)
    assert s.biggest.key == f"{prefix}:s:9" and s.biggest.ttl_ms > 0
    assert [b.key for b in report.biggest] == [f"{prefix}:s:9", f"{prefix}:s:8", f"{prefix}:s:7"]
    assert report.biggest[1].ttl_ms == -1 and report.biggest[0].namespace == f"{prefix}:s"
    assert ns["(no namespace)"].keys == 1
    assert report.keys == 11 and report.without_ttl == 6


def test_summary_leaves_out_keys_gone_between_scan_and_their_commands(
    redis_plain, prefixed, monkeypatch
):
    """A key deleted after SCAN listed it (PTTL -2, MEMORY USAGE nil) is not counted, and
    the rest of its batch still is; the usual all-integer batch takes the short path."""
    from closeup_ops.ops.keyspace import summary as summary_mod

    prefix, client = prefixed
    for i in range(6):
        client.set(f"{prefix}:g:{i}", "v" * 64 * 2**i, ex=600 if i < 2 else None)
    pack = summary_mod.PTTL_AND_MEMORY
    victims = [f"{prefix}:g:0".encode(), f"{prefix}:g:5".encode()]

    def pack_after_deleting(keys):
        client.delete(*victims)  # gone before the server sees PTTL / MEMORY USAGE
        return pack(keys)

    monkeypatch.setattr(summary_mod, "PTTL_AND_MEMORY", pack_after_deleting)
    target = target_for(redis_plain)
    report = summarize(target, ScanSpec(f"{prefix}:g:*"))
    target.close()
    (ns,) = report.namespaces
    assert (ns.keys, ns.with_ttl, ns.without_ttl) == (4, 1, 3)
    assert ns.total_bytes == sum(client.memory_usage(f"{prefix}:g:{i}") for i in range(1, 5))
    assert ns.biggest.key == f"{prefix}:g:4"


def test_delete_keys_counts_and_audits(redis_plain, prefixed, tmp_path, monkeypatch):
    from closeup_ops import audit

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    prefix, client = prefixed
    fill(client, prefix + ":d:{}", 1200)
    target = target_for(redis_plain)
    dry = delete_keys(target, ScanSpec(f"{prefix}:d:*"), yes=False)
    assert (dry.matched, dry.deleted, len(dry.sample)) == (1200, 0, 10)
    assert audit.read_entries() == []
    done = delete_keys(target, ScanSpec(f"{prefix}:d:*", count=100), yes=True)
    target.close()
    assert done.deleted == done.matched == 1200
    assert not list(client.scan_iter(f"{prefix}:d:*"))
    (entry,) = audit.read_entries()
    assert entry["deleted"] == 1200 and entry["result"] == "ok"
    assert entry["target"] == f"{redis_plain.host}:{redis_plain.port}"


def test_drain_counts_replies_in_flight(redis_plain, prefixed):
    prefix, client = prefixed
    fill(client, prefix + ":f:{}", 10)
    channel = NodeChannel("plain", client)
    channel.send(b"".join(pack("UNLINK", f"{prefix}:f:{i}") for i in range(10)), 10)
    assert sum(channel.drain()) == 10
    assert channel.pending == 0
    channel.close()


def test_memory_refused_noted_once(tmp_path):
    from closeup_ops.local.servers import start_redis

    server = start_redis(tmp_path / "nomem", "--rename-command", "MEMORY", "")
    try:
        client = client_for(server)
        fill(client, "m:{}", 50)
        target = target_for(server)
        stats = ScanStats()
        rows = [
            m for b in iter_keys(target, ScanSpec(count=10), stats, memory=True) for m in b.memory
        ]
        target.close()
        assert rows == [None] * 50
        assert "refused MEMORY USAGE" in stats.memory_refused
    finally:
        server.stop()
