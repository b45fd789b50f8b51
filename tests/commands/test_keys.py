"""`keys` against real servers: standalone and the 3-primary cluster give the same answers;
--type/--limit/--ttl/--memory/--values; --summary; --delete; bad options."""

from __future__ import annotations

import json
import threading

import pytest
from helpers.common import server_env
from helpers.keyspace import OTP, USERS, VIDEO, client_for, fill, seed, unique_prefix

from closeup_ops import audit


def ndjson(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(params=["standalone", "cluster"])
def target(request, redis_plain, redis_cluster):
    """The same seeded data on a standalone server and on the cluster."""
    server = redis_plain if request.param == "standalone" else redis_cluster
    entry = server if request.param == "standalone" else server.entry
    data = seed(server)
    yield request.param, server_env(entry), data
    data.cleanup()


def run_both(cli, redis_plain, redis_cluster, *args: str, tail: str = ""):
    """Seed the same keys (same prefix) on both, run the same command, return results."""
    prefix = unique_prefix()
    out = {}
    for name, server, entry in (
        ("standalone", redis_plain, redis_plain),
        ("cluster", redis_cluster, redis_cluster.entry),
    ):
        data = seed(server, prefix)
        try:
            out[name] = cli(*[a.format(p=prefix) for a in args], env=server_env(entry))
        finally:
            data.cleanup()
    return prefix, out["standalone"], out["cluster"]


def test_keys_json_streams_one_object_per_key(cli, target):
    mode, env, data = target
    r = cli("keys", f"{data.prefix}:otp:*", "--json", env=env)
    assert r.code == 0, r.err
    rows = ndjson(r.out)
    assert len(rows) == OTP
    assert {row["key"] for row in rows} == data.keys("otp:")
    assert all(set(row) == {"key"} for row in rows)


def test_keys_plain_text_one_key_per_line(cli, target):
    mode, env, data = target
    r = cli("keys", f"{data.prefix}:user:*", env=env)
    assert r.code == 0, r.err
    assert set(r.out.split()) == data.keys("user:")
    expected = "3 primaries" if mode == "cluster" else "1 primary"
    assert f"{USERS} keys matching" in r.err and expected in r.err


def test_standalone_and_cluster_give_the_same_keys_and_ttls(cli, redis_plain, redis_cluster):
    prefix, single, cluster = run_both(
        cli, redis_plain, redis_cluster, "keys", "{p}:*", "--ttl", "--json"
    )
    assert single.code == cluster.code == 0, single.err + cluster.err

    def shape(result):
        # TTLs tick between the two runs: compare the seconds bucket the seed set.
        return sorted(
            (row["key"], -1 if row["ttl_ms"] == -1 else round(row["ttl_ms"] / 100_000))
            for row in ndjson(result.out)
        )

    assert shape(single) == shape(cluster)
    assert len(shape(single)) == OTP + VIDEO + USERS


def test_cluster_scans_every_primary(cli, redis_cluster):
    """The seeded keys live on all three primaries and all of them are listed."""
    data = seed(redis_cluster)
    try:
        holders = set()
        for node in redis_cluster.primaries():
            single = client_for(node)
            if any(True for _ in single.scan_iter(f"{data.prefix}:*", count=1000)):
                holders.add(node.address)
            single.close()
        assert len(holders) == 3
        r = cli("keys", data.pattern, "--json", env=server_env(redis_cluster.entry))
        assert len(ndjson(r.out)) == OTP + VIDEO + USERS
    finally:
        data.cleanup()


def test_summary_same_on_standalone_and_cluster(cli, redis_plain, redis_cluster):
    prefix, single, cluster = run_both(
        cli, redis_plain, redis_cluster, "keys", "{p}:*", "--summary", "--depth", "2", "--json"
    )
    assert single.code == cluster.code == 0, single.err + cluster.err

    def shape(result):
        doc = result.json()
        return {
            n["namespace"]: (n["keys"], n["with_ttl"], n["without_ttl"], bool(n["biggest"]))
            for n in doc["namespaces"]
        }

    expected = {
        f"{prefix}:otp": (OTP, OTP, 0, True),
        f"{prefix}:video": (VIDEO, VIDEO, 0, True),
        f"{prefix}:user": (USERS, 0, USERS, True),
    }
    assert shape(single) == shape(cluster) == expected
    doc = single.json()
    assert doc["keys"] == OTP + VIDEO + USERS
    assert doc["without_ttl"] == USERS
    user = next(n for n in doc["namespaces"] if n["namespace"].endswith(":user"))
    assert user["pattern"] == f"{prefix}:user:*"
    assert user["ttl_share"] == 0.0
    assert user["avg_bytes"] == round(user["total_bytes"] / USERS, 1)


def test_summary_human_points_at_namespace_without_expiry(cli, target):
    mode, env, data = target
    r = cli("keys", data.pattern, "--summary", "--depth", "3", env=env)
    assert r.code == 0, r.err
    assert f"{data.prefix}:video:pending" in r.out
    assert f"{USERS} keys have no expiry, in: {data.prefix}:user:verified ({USERS})" in r.out
    assert f"ttl --pattern '{data.prefix}:user:verified:*'" in r.out


def test_summary_separator(cli, redis_plain):
    client = client_for(redis_plain)
    prefix = unique_prefix()
    try:
        fill(client, prefix + ".a.{}", 5)
        fill(client, prefix + ".b.{}", 7, ttl=60)
        r = cli(
            "keys",
            f"{prefix}.*",
            "--summary",
            "--separator",
            ".",
            "--depth",
            "2",
            "--json",
            env=server_env(redis_plain),
        )
        assert r.code == 0, r.err
        got = {n["namespace"]: (n["keys"], n["with_ttl"]) for n in r.json()["namespaces"]}
        assert got == {f"{prefix}.a": (5, 0), f"{prefix}.b": (7, 7)}
    finally:
        for key in client.scan_iter(f"{prefix}.*"):
            client.delete(key)
        client.close()


def test_type_limit_ttl_memory(cli, target):
    mode, env, data = target
    data.client.hset(f"{data.prefix}:h:1", mapping={"a": "1", "b": "2"})
    data.client.rpush(f"{data.prefix}:l:1", "x", "y", "z")
    r = cli("keys", data.pattern, "--type", "hash", "--json", env=env)
    assert [row["key"] for row in ndjson(r.out)] == [f"{data.prefix}:h:1"]
    r = cli("keys", data.pattern, "--type", "LIST", "--json", env=env)
    assert [row["key"] for row in ndjson(r.out)] == [f"{data.prefix}:l:1"]

    r = cli("keys", data.pattern, "--limit", "7", "--json", env=env)
    assert len(ndjson(r.out)) == 7

    r = cli("keys", f"{data.prefix}:otp:*", "--ttl", "--memory", "--json", env=env)
    rows = ndjson(r.out)
    assert len(rows) == OTP
    assert all(0 < row["ttl_ms"] <= 300_000 for row in rows)
    assert all(isinstance(row["memory"], int) and row["memory"] > 0 for row in rows)

    r = cli("keys", f"{data.prefix}:user:*", "--ttl", "--memory", env=env)
    lines = r.out.splitlines()
    assert lines[0].split("\t") == ["key", "ttl", "memory"]
    assert all("-1 (no expiry)" in line for line in lines[1:])


def test_values_masked_unless_reveal(cli, target):
    mode, env, data = target
    r = cli("keys", f"{data.prefix}:otp:1", "--values", "--json", env=env)
    (row,) = ndjson(r.out)
    assert row == {"key": f"{data.prefix}:otp:1", "type": "string", "length": 6, "value": "******"}
    assert "100001" not in r.out + r.err
    r = cli("keys", f"{data.prefix}:otp:1", "--values", env=env)
    assert "******" in r.out and "100001" not in r.out

    r = cli("keys", f"{data.prefix}:otp:1", "--values", "--reveal", "--json", env=env)
    assert ndjson(r.out)[0]["value"] == "100001"
    data.client.rpush(f"{data.prefix}:list", *[f"e{i}" for i in range(15)])
    r = cli("keys", f"{data.prefix}:list", "--values", "--reveal", "--json", env=env)
    row = ndjson(r.out)[0]
    assert row["type"] == "list" and row["length"] == 15
    assert row["value"] == [f"e{i}" for i in range(10)]


def test_unusual_keys_are_escaped(cli, redis_plain):
    client = client_for(redis_plain)
    prefix = unique_prefix()
    odd = [
        f'{prefix}:quote"back\\slash'.encode(),
        f"{prefix}:esc\x1b[31m".encode(),
        f"{prefix}:bin".encode() + b"\xff\xfe",
        f"{prefix}:ünï".encode(),
    ]
    try:
        for key in odd:
            client.set(key, "1")
        r = cli("keys", f"{prefix}:*", "--json", env=server_env(redis_plain))
        rows = ndjson(r.out)
        import base64

        got = {
            base64.b64decode(row["key_base64"]) if "key_base64" in row else row["key"].encode()
            for row in rows
        }
        assert got == set(odd)
        r = cli("keys", f"{prefix}:*", env=server_env(redis_plain))
        assert "\x1b" not in r.out and "\\x1b[31m" in r.out
    finally:
        for key in odd:
            client.delete(key)
        client.close()


def test_delete_dry_run_deletes_nothing(cli, target):
    mode, env, data = target
    r = cli("keys", f"{data.prefix}:otp:*", "--delete", env=env)
    assert r.code == 0, r.err
    assert f"dry run: {OTP} keys matching" in r.out and "nothing was deleted" in r.out
    assert "sample:" in r.out and "rerun with --yes" in r.out
    assert len(data.keys("otp:")) == OTP
    doc = cli("keys", f"{data.prefix}:otp:*", "--delete", "--json", env=env).json()
    assert doc["dry_run"] is True and doc["matched"] == OTP and doc["deleted"] == 0
    assert len(doc["sample"]) == 10
    assert audit.read_entries() == []


@pytest.mark.parametrize("mode", ["standalone", "cluster"])
def test_delete_yes_removes_only_matching_keys(cli, redis_plain, redis_cluster, mode):
    """While the delete runs, another client keeps creating keys that do not match: every
    one of them survives, and every matching key is gone."""
    server = redis_plain if mode == "standalone" else redis_cluster
    entry = redis_plain if mode == "standalone" else redis_cluster.entry
    client = client_for(server)
    prefix = unique_prefix()
    fill(client, prefix + ":del:{}", 6000)
    fill(client, prefix + ":keep:{}", 500)
    written: list[str] = []
    stop = threading.Event()

    writing = threading.Event()

    def writer():
        other = client_for(server)
        i = 0
        while not stop.is_set():
            name = f"{prefix}:keep:new:{i}"
            other.set(name, "x")
            written.append(name)
            writing.set()
            i += 1
        other.close()

    thread = threading.Thread(target=writer)
    thread.start()
    assert writing.wait(10), "the writer did not start"  # the delete starts mid-writes
    before = len(written)
    try:
        r = cli(
            "keys",
            f"{prefix}:del:*",
            "--delete",
            "--yes",
            "--scan-count",
            "200",
            "--json",
            env=server_env(entry),
        )
    finally:
        stop.set()
        thread.join()
    try:
        assert r.code == 0, r.err
        doc = r.json()
        assert doc["deleted"] == 6000 and doc["dry_run"] is False, (doc, r.err)
        assert len(written) > before, "no key was written during the delete"
        assert not list(client.scan_iter(f"{prefix}:del:*", count=1000))
        survivors = {k.decode() for k in client.scan_iter(f"{prefix}:keep:*", count=1000)}
        assert len(survivors) == 500 + len(written), (len(survivors), len(written), r.err)
        assert set(written) <= survivors
        entries = audit.read_entries()
        assert len(entries) == 1
        assert entries[0]["command"] == "keys --delete"
        assert entries[0]["deleted"] == 6000 and entries[0]["result"] == "ok"
        assert entries[0]["pattern"] == f"{prefix}:del:*"
    finally:
        for key in client.scan_iter(f"{prefix}:*", count=1000):
            client.delete(key)
        client.close()


def test_delete_human_and_limit(cli, redis_plain):
    client = client_for(redis_plain)
    prefix = unique_prefix()
    fill(client, prefix + ":x:{}", 50)
    try:
        r = cli(
            "keys",
            f"{prefix}:x:*",
            "--delete",
            "--yes",
            "--limit",
            "20",
            env=server_env(redis_plain),
        )
        assert r.code == 0, r.err
        assert r.out.startswith(f"deleted 20 keys matching '{prefix}:x:*'")
        assert len(list(client.scan_iter(f"{prefix}:x:*"))) == 30
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--type", "blob"], "--type blob is not valid"),
        (["--limit", "0"], "--limit 0 is not valid"),
        (["--limit", "x"], "--limit"),
        (["--scan-count", "0"], "--scan-count 0 is not valid"),
        (["--summary", "--depth", "0"], "--depth 0 is not valid"),
        (["--summary", "--separator", ""], "--separator is empty"),
        (["--separator", ":"], "--separator only applies to --summary"),
        (["--depth", "2"], "--depth only applies to --summary"),
        (["--reveal"], "--reveal needs --values"),
        (["--yes"], "--yes only applies to --delete"),
        (["--summary", "--delete"], "do not go together"),
        (["--delete", "--ttl"], "--ttl does not apply to --delete"),
        (["--summary", "--values"], "--values does not apply to --summary"),
        ([""], "the pattern is empty"),
    ],
)
def test_bad_options_exit_2(cli, args, needle):
    # No server on this port: every one of these is refused before connecting.
    r = cli("keys", *args, env={"REDIS_PORT": "1"})
    assert r.code == 2, r.err
    assert needle in r.err
    assert len(r.err_lines) == 1 and "Traceback" not in r.err


# --- faults, on servers of our own (killed, or started without MEMORY) ------------------


@pytest.fixture
def own_server(tmp_path):
    from closeup_ops.local.servers import start_redis

    started = []

    def start(*extra: str, keys: int = 20_000):
        server = start_redis(
            tmp_path / f"own{len(started)}", "--enable-debug-command", "yes", *extra
        )
        started.append(server)
        client = client_for(server)
        client.execute_command("DEBUG", "POPULATE", keys, "otp")
        client.close()
        return server

    yield start
    for server in started:
        server.stop()


def kill_after(monkeypatch, server, calls: int) -> None:
    """Kill the server (by PID) when the scan has read `calls` batches of replies."""
    from closeup_ops.ops.keyspace import scan as keyspace_scan

    real = keyspace_scan.NodeChannel.read
    seen = [0]

    def read(self, n):
        seen[0] += 1
        if seen[0] == calls:
            server.kill()
        return real(self, n)

    monkeypatch.setattr(keyspace_scan.NodeChannel, "read", read)


@pytest.mark.parametrize(
    "args",
    [
        ["keys", "otp:*", "--json", "--scan-count", "100"],
        ["keys", "--summary", "--scan-count", "100"],
        ["ttl", "--pattern", "otp:*", "--scan-count", "100"],
    ],
)
def test_server_killed_mid_scan_exit_3_with_count(cli, own_server, monkeypatch, args):
    server = own_server()
    kill_after(monkeypatch, server, 20)
    r = cli(*args, env=server_env(server))
    assert r.code == 3, r.err
    assert len(r.err_lines) == 1 and "Traceback" not in r.err
    import re

    m = re.search(r"scanned (\d+) keys before the connection was lost", r.err)
    assert m, r.err
    scanned = int(m.group(1))
    assert 0 < scanned < 20_000
    if "--json" in args:
        assert 0 < len(ndjson(r.out)) <= scanned


def test_server_killed_mid_delete_says_what_was_deleted(cli, own_server, monkeypatch):
    server = own_server()
    kill_after(monkeypatch, server, 10)
    r = cli("keys", "otp:*", "--delete", "--yes", "--scan-count", "100", env=server_env(server))
    assert r.code == 3, r.err
    assert "before the connection was lost" in r.err and "; deleted at least " in r.err
    (entry,) = audit.read_entries()
    assert entry["result"].startswith("failed: scanned")
    assert 0 < entry["deleted"] < 20_000


def test_ctrl_c_mid_stream_exit_130_with_what_was_done(cli, own_server, monkeypatch):
    server = own_server()
    from closeup_ops.ops.keyspace import encode as keyspace_encode

    real = keyspace_encode.ndjson_batch
    calls = [0]

    def interrupting(*a, **kw):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(keyspace_encode, "ndjson_batch", interrupting)
    r = cli("keys", "otp:*", "--json", "--scan-count", "100", env=server_env(server))
    assert r.code == 130
    assert "interrupted: scanned" in r.err and "on 0 of 1 primaries, listed" in r.err
    assert len(r.err_lines) == 1
    assert len(ndjson(r.out)) > 0


def test_ctrl_c_mid_delete_exit_130_audited(cli, own_server, monkeypatch):
    server = own_server()
    from closeup_ops.ops.keyspace import delete as keyspace

    real = keyspace.unlink_commands
    calls = [0]

    def interrupting(keys, cluster):
        calls[0] += 1
        if calls[0] == 5:
            raise KeyboardInterrupt
        return real(keys, cluster)

    monkeypatch.setattr(keyspace, "unlink_commands", interrupting)
    r = cli("keys", "otp:*", "--delete", "--yes", "--scan-count", "100", env=server_env(server))
    assert r.code == 130
    assert "interrupted: scanned" in r.err and "deleted " in r.err
    (entry,) = audit.read_entries()
    assert entry["result"] == "interrupted" and entry["deleted"] > 0
    left = client_for(server).dbsize()
    assert left == 20_000 - entry["deleted"]


def test_memory_refused_column_says_so_once(cli, own_server):
    server = own_server("--rename-command", "MEMORY", "", keys=3000)
    r = cli("keys", "otp:*", "--memory", "--ttl", "--json", env=server_env(server))
    assert r.code == 0, r.err
    rows = ndjson(r.out)
    assert len(rows) == 3000
    assert all(row["memory"] is None and row["ttl_ms"] == -1 for row in rows)
    assert r.err.count("refused MEMORY USAGE") == 1
    r = cli("keys", "otp:*", "--memory", env=server_env(server))
    assert r.code == 0 and "\tn/a" in r.out
    r = cli("keys", "--summary", "--json", env=server_env(server))
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["keys"] == 3000 and doc["total_bytes"] is None
    assert "MEMORY USAGE" in doc["memory_refused"]


def test_only_scan_with_large_count_and_pipelined_batches(cli, own_server, monkeypatch):
    """INFO commandstats after every keyspace command: no KEYS, few SCANs (COUNT 1000),
    and the per-key commands went out in a handful of writes, not one per key."""
    server = own_server(keys=20_000)
    client = client_for(server)
    client.expire("otp:1", 300)
    from closeup_ops.ops.keyspace import scan as keyspace_scan

    sends = [0]
    real = keyspace_scan.NodeChannel.send

    def counting(self, payload, replies):
        sends[0] += 1
        return real(self, payload, replies)

    monkeypatch.setattr(keyspace_scan.NodeChannel, "send", counting)
    env = server_env(server)
    client.config_resetstat()
    runs = [
        ("keys", "otp:*", "--ttl", "--memory", "--json"),
        ("keys", "--summary"),
        ("keys", "otp:*", "--delete"),
        ("ttl", "--pattern", "otp:*"),
    ]
    for args in runs:
        assert cli(*args, env=env).code == 0
    stats = client.info("commandstats")
    assert "cmdstat_keys" not in stats
    scans = stats["cmdstat_scan"]["calls"]
    # ~20 SCAN calls per run with COUNT 1000 over 20k keys (redis-cli's COUNT 10: ~2000).
    assert scans <= 4 * 25
    assert stats["cmdstat_pttl"]["calls"] == 3 * 20_000
    assert stats["cmdstat_memory|usage"]["calls"] == 2 * 20_000
    # Every write carries a SCAN and/or a whole batch of per-key commands.
    assert sends[0] <= 2 * scans + 4
    client.close()


def test_keys_over_tls_and_with_acl_user(cli, redis_tls, tls_files, redis_acl):
    """The raw pipelined channel rides the connection redis-py set up: TLS, ACL user."""
    import redis as redis_py
    from helpers.common import ACL_PASSWORD, ACL_USER

    tls = redis_py.Redis(
        host=redis_tls.host, port=redis_tls.port, ssl=True, ssl_ca_certs=str(tls_files.ca)
    )
    prefix = unique_prefix()
    fill(tls, prefix + ":t:{}", 2500, ttl=60)
    try:
        env = server_env(redis_tls, REDIS_TLS="true", REDIS_CA_CERT=str(tls_files.ca))
        r = cli("keys", f"{prefix}:*", "--ttl", "--json", "--scan-count", "100", env=env)
        assert r.code == 0, r.err
        rows = ndjson(r.out)
        assert len(rows) == 2500 and all(row["ttl_ms"] > 0 for row in rows)
    finally:
        for key in tls.scan_iter(f"{prefix}:*", count=1000):
            tls.delete(key)
        tls.close()

    acl = redis_py.Redis(
        host=redis_acl.host, port=redis_acl.port, username=ACL_USER, password=ACL_PASSWORD
    )
    fill(acl, prefix + ":a:{}", 30)
    try:
        env = server_env(redis_acl, REDIS_USERNAME=ACL_USER, REDIS_PASSWORD=ACL_PASSWORD)
        r = cli("keys", f"{prefix}:*", "--summary", "--json", env=env)
        assert r.code == 0, r.err
        assert r.json()["keys"] == 30
        assert ACL_PASSWORD not in r.out + r.err
    finally:
        for key in acl.scan_iter(f"{prefix}:*"):
            acl.delete(key)
        acl.close()


def test_delete_that_cannot_start_is_audited_as_failed(cli, own_server, monkeypatch):
    """The server goes away between the connect and the first SCAN (nothing scanned yet):
    exit 3, and the audit line of the --yes run says failed, not ok."""
    from closeup_ops.ops.keyspace import delete as keyspace_delete

    server = own_server(keys=500)
    real = keyspace_delete.drive

    def server_gone(*args, **kwargs):
        server.kill()
        return real(*args, **kwargs)

    monkeypatch.setattr(keyspace_delete, "drive", server_gone)
    r = cli("keys", "otp:*", "--delete", "--yes", env=server_env(server))
    assert r.code == 3 and len(r.err_lines) == 1, r.err
    (entry,) = audit.read_entries()
    assert entry["result"].startswith("failed: ") and entry["deleted"] == 0, entry
