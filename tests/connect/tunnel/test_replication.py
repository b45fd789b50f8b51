"""Replica discovery through the proxy for a cluster-mode-disabled cache: ROLE and INFO's
replication lines name only local listeners, and those reach the real nodes.

A real replicated pair (primary + replica) behind a standalone proxy (cluster=False, as for
a TLS standalone cache), dialled over plain TCP; replies read raw (RESP2 and HELLO 3)."""

from __future__ import annotations

import re
import socket

import pytest
from helpers.resp_proxy import NameDial, open_proxy

from closeup_ops.connect.tunnel.commands import CommandScanner
from closeup_ops.connect.tunnel.resp import INFO, NORMAL, ROLE, Pending, frame_end, parse


@pytest.fixture
def proxy(redis_replicated):
    px = open_proxy(NameDial(), cluster=False)
    px.primary = px.add("127.0.0.1", redis_replicated.primary.port)
    yield px
    px.close()
    assert px.errors == []


def command(*words: str | bytes) -> bytes:
    args = [w.encode() if isinstance(w, str) else w for w in words]
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def ask(port: int, *commands: tuple, hello3: bool = False) -> list[bytes]:
    """Send every command in one write (pipelined); the raw reply to each."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if hello3:
            commands = (("HELLO", "3"), *commands)
        sock.sendall(b"".join(command(*c) for c in commands))
        data, replies = b"", []
        while len(replies) < len(commands):
            end = frame_end(data) if data else -1
            if end < 0:
                chunk = sock.recv(65536)
                assert chunk, f"closed after {replies!r}"
                data += chunk
                continue
            replies.append(data[:end])
            data = data[end:]
    return replies[1:] if hello3 else replies


def value(reply: bytes):
    """A reply as Python values: bytes for scalars, lists for aggregates."""

    def plain(frame):
        t, payload = frame
        return [plain(f) for f in payload] if isinstance(payload, list) else payload

    return plain(parse(reply)[0])


def info_text(reply: bytes) -> str:
    text = value(reply).decode()
    return text[4:] if reply[:1] == b"=" else text


def info_field(text: str, key: str) -> str:
    return re.search(rf"^{key}:(.*?)\r?$", text, re.M)[1]


def check_local(proxy, pair, port: int) -> None:
    assert port in proxy.nodes().values()
    assert port not in (pair.primary.port, pair.replica.port)


def replica_from_role(proxy, pair, reply: bytes) -> int:
    role, _, replicas = value(reply)
    assert role == b"master" and len(replicas) == 1
    host, port, _ = replicas[0]
    assert host == b"127.0.0.1"
    check_local(proxy, pair, int(port))
    return int(port)


def replica_from_info(proxy, pair, reply: bytes) -> int:
    text = info_text(reply)
    head, length = reply.split(b"\r\n", 1)[0], len(parse(reply)[0][1])
    assert int(head[1:]) == length  # the length header was recomputed
    line = dict(kv.split("=") for kv in info_field(text, "slave0").split(","))
    assert line["ip"] == "127.0.0.1"
    check_local(proxy, pair, int(line["port"]))
    section = text[text.index("# Replication") :].split("\r\n\r\n")[0]
    assert str(pair.replica.port) not in section and str(pair.primary.port) not in section
    return int(line["port"])


def assert_is_replica(port: int, pair, hello3: bool) -> None:
    """Through the rewritten address: the real replica, which names its primary locally."""
    role, info = ask(port, ("ROLE",), ("INFO", "replication"), hello3=hello3)
    role = value(role)
    assert role[0] == b"slave" and role[1] == b"127.0.0.1"
    assert int(role[2]) not in (pair.primary.port, pair.replica.port)
    text = info_text(info)
    assert info_field(text, "role") == "slave"
    assert info_field(text, "master_host") == "127.0.0.1"
    assert int(info_field(text, "master_port")) == int(role[2])
    # and the primary's rewritten address leads back to the primary
    assert value(ask(int(role[2]), ("ROLE",))[0])[0] == b"master"


@pytest.mark.parametrize("hello3", [False, True], ids=["resp2", "resp3"])
def test_role_and_info_name_local_replicas_that_reach_the_replica(proxy, redis_replicated, hello3):
    role, info = ask(proxy.primary, ("ROLE",), ("INFO", "replication"), hello3=hello3)
    if hello3:
        assert info[:1] == b"="  # RESP3: a verbatim string, rewritten as one
    by_role = replica_from_role(proxy, redis_replicated, role)
    by_info = replica_from_info(proxy, redis_replicated, info)
    assert by_role == by_info
    assert_is_replica(by_role, redis_replicated, hello3)


@pytest.mark.parametrize("section", ["all", "everything", "default", None])
def test_info_sections_holding_replication_are_rewritten(proxy, redis_replicated, section):
    words = ("INFO", section) if section else ("INFO",)
    (info,) = ask(proxy.primary, words)
    assert "# Replication" in info_text(info)
    replica_from_info(proxy, redis_replicated, info)


def test_pipelined_with_other_commands(proxy, redis_replicated):
    replies = ask(
        proxy.primary,
        ("SET", "repl:pipe", "v" * 70000),  # a long value before and after the answers
        ("ROLE",),
        ("GET", "repl:pipe"),
        ("INFO", "memory", "replication"),
        ("PING",),
        ("INFO", "cluster"),
        ("ROLE",),
    )
    assert replies[0] == b"+OK\r\n" and replies[4] == b"+PONG\r\n"
    assert replies[2] == b"$70000\r\n" + b"v" * 70000 + b"\r\n"
    assert "# Memory" in info_text(replies[3])
    port = replica_from_info(proxy, redis_replicated, replies[3])
    assert replica_from_role(proxy, redis_replicated, replies[1]) == port
    assert replica_from_role(proxy, redis_replicated, replies[6]) == port
    assert replies[5] == ask(redis_replicated.primary.port, ("INFO", "cluster"))[0]


@pytest.mark.parametrize("hello3", [False, True], ids=["resp2", "resp3"])
def test_inside_multi_exec(proxy, redis_replicated, hello3):
    replies = ask(
        proxy.primary,
        ("MULTI",),
        ("ROLE",),
        ("INFO", "replication"),
        ("INFO", "cluster"),
        ("EXEC",),
        hello3=hello3,
    )
    assert replies[1:4] == [b"+QUEUED\r\n"] * 3
    end = replies[4].index(b"\r\n") + 2
    assert replies[4][:end] == b"*3\r\n"
    role_end = frame_end(replies[4], end)
    info_end = frame_end(replies[4], role_end)
    port = replica_from_role(proxy, redis_replicated, replies[4][end:role_end])
    assert replica_from_info(proxy, redis_replicated, replies[4][role_end:info_end]) == port
    assert "cluster_enabled:0" in info_text(replies[4][info_end:])
    assert_is_replica(port, redis_replicated, hello3)


def test_replica_side_names_its_primary_locally(proxy, redis_replicated):
    replica = proxy.add("127.0.0.1", redis_replicated.replica.port)
    role, info = ask(replica, ("ROLE",), ("INFO", "replication"))
    role = value(role)
    assert role[:2] == [b"slave", b"127.0.0.1"]
    assert int(role[2]) == proxy.primary  # the primary's existing listener
    text = info_text(info)
    assert info_field(text, "master_host") == "127.0.0.1"
    assert int(info_field(text, "master_port")) == proxy.primary


# INFO without the replication section: the server's own bytes. Sections whose text does
# not change between two calls (no counters, no clock) are compared byte for byte with the
# same request sent straight to the real primary.
STABLE = [("INFO", "cluster"), ("INFO", "modules"), ("INFO", "cluster", "modules")]


@pytest.mark.parametrize("hello3", [False, True], ids=["resp2", "resp3"])
def test_info_without_replication_passes_through_byte_identical(proxy, redis_replicated, hello3):
    direct = ask(redis_replicated.primary.port, *STABLE, hello3=hello3)
    through = ask(proxy.primary, *STABLE, hello3=hello3)
    assert through == direct
    assert all(b"cluster_enabled:0" in reply for reply in (through[0], through[2]))


@pytest.mark.parametrize("use_hiredis", [True, False], ids=["hiredis", "python"])
def test_kinds_recorded_for_role_and_info(use_hiredis):
    """Which replies are taken whole, by both command readers (one byte at a time too)."""
    sent = [("INFO", "memory"), ("info", "Memory", "REPLICATION"), ("ROLE",), ("GET", "k")]
    sent += [("INFO",), ("INFO", "cpu", "keyspace"), ("ROLE", "x"), ("MULTI",), ("ROLE",)]
    sent += [("INFO", "memory"), ("EXEC",), ("info", "everything"), ("INFO", "a", "b", "c")]
    data = b"".join(command(*c) for c in sent)
    want = [NORMAL, INFO, ROLE, NORMAL, INFO, NORMAL, NORMAL, NORMAL, NORMAL, NORMAL]
    want += [(ROLE, NORMAL), INFO, NORMAL]
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        pending = Pending()
        scanner = CommandScanner(pending, use_hiredis=use_hiredis)
        if not use_hiredis:
            scanner.feed(b"PING\r\n")  # inline first: the Python reader
            want_all = [NORMAL, *want]
        else:
            want_all = want
        for chunk in chunks:
            scanner.feed(chunk)
        assert pending.kinds() == want_all
