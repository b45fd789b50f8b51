"""Pairing replies with requests around pub/sub and HELLO, through the proxy, against the
session's real 3-primary cluster (`redis_cluster`) and primary with a replica.

What redis-server 7 does, checked on the real server (the tests below lean on it):
- RESP2: a connection is in pub/sub context (only (P|S)(UN)SUBSCRIBE, PING, QUIT, RESET
  accepted) while it holds any subscription; it leaves it after the (P|S)UNSUBSCRIBE that
  drops the last one. The count in an UNSUBSCRIBE/PUNSUBSCRIBE reply is channels + patterns,
  in a SUNSUBSCRIBE reply shard channels only: a `:0` does not mean the context is over.
- RESP3: confirmations are `>` pushes, one per channel named (a channel named twice: two);
  an UNSUBSCRIBE of everything sends one per channel held, or one naming `_` if none. A
  refused command gets one plain error instead: -MOVED / -CROSSSLOT for SSUBSCRIBE,
  -NOPERM for a user without channel permission.
- A refused HELLO 3 (-WRONGPASS) leaves the connection in RESP2.
Expected addresses come from the servers (direct connections) and the proxy's listeners."""

from __future__ import annotations

import hiredis
import pytest
import redis
from helpers.resp_proxy import Conn, NameDial, cmd, open_proxy

from closeup_ops.connect.tunnel.resp import Pending
from closeup_ops.connect.tunnel.rewrite import rewrite_redirect, rewrite_reply
from closeup_ops.connect.tunnel.scan import CommandScanner, ReplyScanner


def primaries(cluster) -> list[tuple[int, int, int]]:
    """(first slot, last slot, real port) of each slot range, asked of a node directly."""
    r = redis.Redis(port=cluster.nodes[0].port, socket_timeout=10)
    return [(s, e, int(p[1])) for s, e, p, *_ in r.execute_command("CLUSTER", "SLOTS")]


def slot_of(cluster, key: str) -> int:
    r = redis.Redis(port=cluster.nodes[0].port, socket_timeout=10)
    return r.execute_command("CLUSTER", "KEYSLOT", key)


def owner(cluster, key: str) -> int:
    slot = slot_of(cluster, key)
    return next(port for s, e, port in primaries(cluster) if s <= slot <= e)


def key_on(cluster, port: int, prefix: str, other: bool = False) -> str:
    keys = (f"{prefix}{i}" for i in range(10000))
    return next(k for k in keys if (owner(cluster, k) == port) != other)


@pytest.fixture
def proxy(redis_cluster):
    px = open_proxy(NameDial())
    px.real = {n.port for n in redis_cluster.nodes}
    px.home = primaries(redis_cluster)[0][2]  # a primary: SSUBSCRIBE to its slots works
    px.entry = px.add("127.0.0.1", px.home)
    yield px
    px.close()
    assert px.errors == []


def assert_slots_local(proxy, reply) -> None:
    """A CLUSTER SLOTS reply whose every node is one of the proxy's local listeners."""
    assert isinstance(reply, list) and reply, reply
    local = set(proxy.nodes().values())
    for _start, _end, *nodes in reply:
        for host, port, *_ in nodes:
            assert host == b"127.0.0.1" and port in local and port not in proxy.real, reply


def assert_moved_local(proxy, error, slot: int) -> None:
    assert isinstance(error, hiredis.ReplyError), error
    verb, got_slot, address = str(error).split()
    host, port = address.rsplit(":", 1)
    assert (verb, int(got_slot), host) == ("MOVED", slot, "127.0.0.1"), error
    assert int(port) in set(proxy.nodes().values()) and int(port) not in proxy.real


def lookalike(cluster, port: int) -> str:
    """A list on node `port` whose LRANGE reply is byte for byte a pub/sub message."""
    key = key_on(cluster, port, "ps:lookalike:")
    r = redis.Redis(port=port, socket_timeout=10)
    r.delete(key)
    r.rpush(key, "message", "ps:ch", "hi")
    return key


def publish(cluster, verb: str, channel: str) -> None:
    """PUBLISH (any node: messages reach every node) or SPUBLISH (on the channel's owner)."""
    port = owner(cluster, channel) if verb == "SPUBLISH" else cluster.nodes[0].port
    redis.Redis(port=port, socket_timeout=10).execute_command(verb, channel, "hi")


# ---- gap 1: RESP2, leaving pub/sub -------------------------------------------------------
KINDS = {  # subscribe, unsubscribe, publish, the message's type
    "channels": ("SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH", b"message"),
    "patterns": ("PSUBSCRIBE", "PUNSUBSCRIBE", "PUBLISH", b"pmessage"),
    "shard": ("SSUBSCRIBE", "SUNSUBSCRIBE", "SPUBLISH", b"smessage"),
}


@pytest.mark.parametrize("pipelined", [False, True], ids=["after", "pipelined"])
@pytest.mark.parametrize("every", [False, True], ids=["named", "all"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_resp2_topology_after_the_last_unsubscribe_is_rewritten(
    redis_cluster, proxy, kind, every, pipelined
):
    sub, unsub, pub, message = KINDS[kind]
    tag = key_on(redis_cluster, proxy.home, f"ps:{kind}:")  # both names in one slot there
    names = [f"{{{tag}}}{s}" for s in ("a", "b")]
    # out of pub/sub, a reply shaped like a message answers a request all the same
    listed = lookalike(redis_cluster, proxy.home)
    if kind == "patterns":
        names = [n + "*" for n in names]
    conn = Conn(proxy.entry)
    try:
        conn.send(cmd(sub, *names))
        assert [r[2] for r in conn.read(2)] == [1, 2]
        publish(redis_cluster, pub, names[0].rstrip("*"))
        assert conn.read()[0][0] == message
        conn.send(cmd(unsub) if every else cmd(unsub, *names))
        if not pipelined:
            assert sorted(r[2] for r in conn.read(2)) == [0, 1]
        conn.send(cmd("LRANGE", listed, "0", "-1"), cmd("CLUSTER", "SLOTS"), cmd("PING"))
        if pipelined:
            assert sorted(r[2] for r in conn.read(2)) == [0, 1]
        listed, slots, pong = conn.read(3)
        assert pong == b"PONG"  # a plain +PONG: the server left pub/sub context
        assert listed == [b"message", b"ps:ch", b"hi"]
        assert_slots_local(proxy, slots)
    finally:
        conn.close()


def test_resp2_role_after_unsubscribe_names_the_local_replica(redis_replicated):
    px = open_proxy(NameDial(), cluster=False)
    try:
        primary = px.add("127.0.0.1", redis_replicated.primary.port)
        conn = Conn(primary)
        conn.send(cmd("SUBSCRIBE", "ps:role"))
        conn.read()
        conn.send(cmd("UNSUBSCRIBE", "ps:role"), cmd("ROLE"))
        _, (role, _offset, replicas) = conn.read(2)
        conn.close()
        assert role == b"master" and len(replicas) == 1
        host, port, _ = replicas[0]
        assert host == b"127.0.0.1" and int(port) in set(px.nodes().values())
        assert int(port) != redis_replicated.replica.port
        assert px.errors == []
    finally:
        px.close()


def frames(data: bytes) -> list[bytes]:
    """`data` cut into its top-level frames (hiredis says where each ends)."""
    reader, out, start = hiredis.Reader(), [], 0
    for end in range(1, len(data) + 1):
        reader.feed(data[end - 1 : end])
        if reader.gets() is not False:
            out.append(data[start:end])
            start = end
    return out


def pair(requests: bytes, replies: list[bytes]) -> tuple[list[bytes], list[bool]]:
    """What the scanners make of `replies` (frames a real server sent) to `requests`, each
    frame fed in 7-byte pieces; every node mapped to 127.0.0.1 at 50000 + its order of first
    appearance. With, after each frame, whether the scanner holds the connection in pub/sub."""
    table: dict = {}

    def ports(host, port, ip):
        return b"127.0.0.1", table.setdefault((host, port), 50000 + len(table))

    pending = Pending()
    CommandScanner(pending, use_hiredis=False).feed(requests)
    scanner = ReplyScanner(
        pending,
        lambda kind, frame: rewrite_reply(kind, frame, ports),
        lambda line: rewrite_redirect(line, ports),
    )
    out, context = [], []
    for frame in replies:
        out.append(
            b"".join(b"".join(scanner.feed(frame[i : i + 7])) for i in range(0, len(frame), 7))
        )
        context.append(bool(scanner.stream))
    assert not pending, pending.kinds()
    return out, context


def parse_all(data: bytes) -> list:
    reader = hiredis.Reader()
    reader.feed(data)
    out = []
    while (got := reader.gets()) is not False:
        out.append(got)
    return out


def test_resp2_a_zero_count_with_other_subscriptions_left_is_still_pub_sub(redis_cluster):
    """The bytes of a real server: after SUNSUBSCRIBE answers `:0` the connection still holds
    a channel, so a message can come before the reply to the next request; only the
    UNSUBSCRIBE of that channel ends pub/sub."""
    home = primaries(redis_cluster)[0][2]
    shard = key_on(redis_cluster, home, "ps:zero:")
    first = [cmd("SUBSCRIBE", "ps:zero"), cmd("SSUBSCRIBE", shard), cmd("SUNSUBSCRIBE", shard)]
    then = [cmd("CLUSTER", "SLOTS"), cmd("UNSUBSCRIBE", "ps:zero"), cmd("CLUSTER", "SLOTS")]
    conn = Conn(home)
    try:
        conn.send(*first)
        assert [r[2] for r in conn.read(3)] == [1, 1, 0]
        publish(redis_cluster, "PUBLISH", "ps:zero")
        assert conn.read()[0] == [b"message", b"ps:zero", b"hi"]
        conn.send(*then)
        refused, unsubscribed, slots = conn.read(3)
        replies = conn.raw
    finally:
        conn.close()
    # the server says when it is in pub/sub context: it refused CLUSTER SLOTS after the
    # SUNSUBSCRIBE's `:0`, and answered it after the UNSUBSCRIBE
    assert "only (P|S)SUBSCRIBE" in str(refused) and unsubscribed[2] == 0
    assert isinstance(slots, list) and slots
    sent = frames(replies)
    out, context = pair(b"".join(first + then), sent)
    assert context == [True] * 5 + [False] * 2  # out once the last channel is dropped
    assert out[:6] == sent[:6]  # the message passed as it came, paired with nothing
    got = parse_all(out[6])[0]
    assert {p for _, _, *nodes in got for _, p, *_ in nodes} <= set(range(50000, 50010))


# ---- gap 2: RESP3, a refused (S)SUBSCRIBE answers with a plain error ----------------------
def test_resp3_refused_ssubscribe_then_topology(redis_cluster, proxy):
    elsewhere = key_on(redis_cluster, proxy.home, "ps:moved:", other=True)
    here = key_on(redis_cluster, proxy.home, "ps:here:")
    conn = Conn(proxy.entry)
    try:
        conn.send(cmd("HELLO", "3"))
        assert conn.read()[0][b"proto"] == 3
        conn.send(
            cmd("SSUBSCRIBE", elsewhere),
            cmd("CLUSTER", "SLOTS"),
            cmd("SSUBSCRIBE", here, elsewhere),  # -CROSSSLOT
            cmd("SSUBSCRIBE", here, here),  # two confirmations
            cmd("CLUSTER", "SLOTS"),
            cmd("SUNSUBSCRIBE"),  # one confirmation per channel held
            cmd("CLUSTER", "SLOTS"),
        )
        moved, slots, crossslot, *confirmed = conn.read(8)
        assert_moved_local(proxy, moved, slot_of(redis_cluster, elsewhere))
        assert_slots_local(proxy, slots)
        assert str(crossslot).startswith("CROSSSLOT")
        assert confirmed[:2] == [[b"ssubscribe", here.encode(), 1]] * 2
        assert_slots_local(proxy, confirmed[2])
        assert confirmed[3] == [b"sunsubscribe", here.encode(), 0]
        assert_slots_local(proxy, confirmed[4])
    finally:
        conn.close()


@pytest.fixture
def no_channels_user(redis_cluster, proxy):
    """A user on the proxy's node allowed every key and command but no channel."""
    r = redis.Redis(port=proxy.home, socket_timeout=10)
    r.execute_command("ACL", "SETUSER", "ps-nochan", "on", ">pw", "~*", "+@all", "resetchannels")
    yield "ps-nochan"
    r.execute_command("ACL", "DELUSER", "ps-nochan")


@pytest.mark.parametrize("protocol", [3, 2])
def test_noperm_subscribe_then_topology(proxy, no_channels_user, protocol):
    conn = Conn(proxy.entry)
    try:
        conn.send(cmd("HELLO", str(protocol), "AUTH", no_channels_user, "pw"))
        conn.read()
        conn.send(
            cmd("SUBSCRIBE", "ps:a", "ps:b"),
            cmd("PSUBSCRIBE", "ps:*"),
            cmd("CLUSTER", "SLOTS"),
            cmd("UNSUBSCRIBE"),  # allowed: one confirmation naming no channel
            cmd("CLUSTER", "SLOTS"),
        )
        sub, psub, slots, unsub, again = conn.read(5)
        assert str(sub).startswith("NOPERM") and str(psub).startswith("NOPERM")
        assert unsub == [b"unsubscribe", None, 0]
        assert_slots_local(proxy, slots)
        assert_slots_local(proxy, again)
    finally:
        conn.close()


def test_resp3_messages_between_confirmations_and_replies(redis_cluster, proxy):
    conn = Conn(proxy.entry)
    try:
        conn.send(cmd("HELLO", "3"), cmd("SUBSCRIBE", "ps:r3a", "ps:r3b"))
        conn.read(3)
        publish(redis_cluster, "PUBLISH", "ps:r3a")
        conn.send(cmd("UNSUBSCRIBE"), cmd("CLUSTER", "SLOTS"), cmd("PING"))
        got = conn.read(5)
        assert got[0] == [b"message", b"ps:r3a", b"hi"]
        assert sorted(r[2] for r in got[1:3]) == [0, 1]
        assert_slots_local(proxy, got[3])
        assert got[4] == b"PONG"
    finally:
        conn.close()


# ---- gap 3: a refused HELLO 3 leaves the connection in RESP2 ------------------------------
@pytest.mark.parametrize("pipelined", [False, True], ids=["after", "pipelined"])
def test_refused_hello_3_keeps_resp2_pairing(proxy, pipelined):
    conn = Conn(proxy.entry)
    try:
        hello = cmd("HELLO", "3", "AUTH", "ps-nobody", "wrong")
        rest = [cmd("SUBSCRIBE", "ps:h", "ps:i"), cmd("UNSUBSCRIBE"), cmd("CLUSTER", "SLOTS")]
        if pipelined:
            conn.send(hello, *rest)
        else:
            conn.send(hello)
            assert str(conn.read()[0]).startswith("WRONGPASS")
            conn.send(*rest)
        got = conn.read(6 if pipelined else 5)
        if pipelined:
            assert str(got.pop(0)).startswith("WRONGPASS")
        assert got[:2] == [[b"subscribe", b"ps:h", 1], [b"subscribe", b"ps:i", 2]]
        assert sorted(r[2] for r in got[2:4]) == [0, 1]
        assert conn.raw.count(b"*3\r\n$9\r\nsubscribe\r\n") == 2  # RESP2: arrays, no push
        assert_slots_local(proxy, got[4])
    finally:
        conn.close()


def test_hello_3_inside_a_transaction_switches_when_exec_runs(proxy):
    conn = Conn(proxy.entry)
    try:
        conn.send(cmd("MULTI"), cmd("HELLO", "3"), cmd("EXEC"))
        assert conn.read(3)[2][0][b"proto"] == 3  # EXEC's array holds HELLO's map
        conn.send(cmd("SUBSCRIBE", "ps:m1", "ps:m2"), cmd("CLUSTER", "SLOTS"))
        pushes, slots = conn.read(2), conn.read()[0]
        assert pushes == [[b"subscribe", b"ps:m1", 1], [b"subscribe", b"ps:m2", 2]]
        assert conn.raw.count(b">3\r\n$9\r\nsubscribe\r\n") == 2
        assert_slots_local(proxy, slots)
    finally:
        conn.close()
