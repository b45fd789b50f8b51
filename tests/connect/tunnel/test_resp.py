"""RESP framing, request/reply pairing and topology rewriting (pure code; frames by hand).

Every frame below is written out byte by byte, the way the servers send it (shapes from the
Redis protocol spec and CLUSTER SLOTS / SHARDS / NODES documentation), never produced by the
code under test."""

from __future__ import annotations

import pytest
from helpers.resp_proxy import cmd

from closeup_ops.connect.tunnel.resp import (
    HELLO3,
    MONITOR,
    NODES,
    NORMAL,
    RESET,
    SHARDS,
    SLOTS,
    SUBSCRIBE,
    Pending,
    frame_end,
)
from closeup_ops.connect.tunnel.rewrite import rewrite_redirect, rewrite_reply
from closeup_ops.connect.tunnel.scan import CommandScanner, ReplyScanner


class Ports:
    """A mapper: each node asked for gets the next local port (recorded)."""

    def __init__(self, here: str = "here.example", start: int = 50001) -> None:
        self.here, self.next, self.table, self.calls = here, start, {}, []

    def __call__(self, host, port, ip):
        self.calls.append((host, port, ip))
        key = (host or self.here, port)
        if key not in self.table:
            self.table[key] = self.next
            self.next += 1
        return b"127.0.0.1", self.table[key]


# ---- frame_end ---------------------------------------------------------------------------
FRAMES = [
    b"+OK\r\n",
    b"-ERR no\r\n",
    b":42\r\n",
    b"$5\r\nhel\r\n\r\n",  # payload holds CRLF: length decides
    b"$-1\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
    b"%2\r\n+k\r\n:1\r\n$1\r\nx\r\n~2\r\n:1\r\n:2\r\n",  # map with a set inside
    b"|1\r\n+ttl\r\n:3\r\n$2\r\nhi\r\n",  # attribute, then the value it annotates
    b"=15\r\ntxt:Some string\r\n",
    b"_\r\n",
    b",1.23\r\n",
    b"(3492890328409238509324850943850943825024385\r\n",
    b"#t\r\n",
    b"!21\r\nSYNTAX invalid syntax\r\n",
    b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
]


@pytest.mark.parametrize("frame", FRAMES)
def test_frame_end_finds_the_end_and_waits_for_the_rest(frame):
    assert frame_end(frame + b"+NEXT\r\n") == len(frame)
    for cut in range(len(frame)):
        assert frame_end(frame[:cut]) == -1, cut


# ---- requests ----------------------------------------------------------------------------
def scan_requests(data: bytes, step: int | None = None, c: bool = False):
    pending = Pending()
    scanner = CommandScanner(pending, use_hiredis=c)
    step = step or len(data)
    for i in range(0, len(data), step):
        scanner.feed(data[i : i + step])
    return pending.kinds(), scanner


def test_pipelined_requests_split_anywhere_are_each_queued_once():
    data = (
        cmd("GET", "a")
        + cmd("cluster", "slots")
        + b"PING\r\n"  # inline
        + b"\r\n"  # empty inline line: no reply
        + cmd("CLUSTER", "SHARDS")
        + cmd("CLUSTER", "REPLICAS", "abc")
        + cmd("SET", "big", "x" * 5000)
        + cmd("CLUSTER", "NODES")
    )
    expected = [NORMAL, SLOTS, NORMAL, SHARDS, NODES, NORMAL, NODES]
    for step in (1, 2, 3, 7, 64, len(data)):
        assert scan_requests(data, step)[0] == expected, step
    arrays = data.replace(b"PING\r\n\r\n", cmd("PING"))  # what client libraries send
    for step in (1, 5, len(data)):
        assert scan_requests(arrays, step, c=True)[0] == expected, step
    with pytest.raises(ValueError):  # inline after arrays under hiredis: pairing stops
        scan_requests(data, c=True)


def test_transaction_queues_its_replies_inside_exec():
    data = cmd("MULTI") + cmd("GET", "a") + cmd("CLUSTER", "SLOTS") + cmd("EXEC")
    assert scan_requests(data)[0] == [NORMAL, NORMAL, NORMAL, (NORMAL, SLOTS)]
    plain = cmd("MULTI") + cmd("GET", "a") + cmd("EXEC") + cmd("MULTI") + cmd("DISCARD")
    assert scan_requests(plain)[0] == [NORMAL] * 5


def test_client_reply_off_and_skip_expect_no_reply():
    data = (
        cmd("CLIENT", "REPLY", "SKIP")
        + cmd("SET", "a", "1")  # skipped
        + cmd("CLUSTER", "SLOTS")
        + cmd("CLIENT", "REPLY", "OFF")
        + cmd("SET", "b", "1")
        + cmd("CLIENT", "REPLY", "ON")  # answers +OK
        + cmd("CLUSTER", "NODES")
    )
    assert scan_requests(data)[0] == [SLOTS, NORMAL, NODES]


def test_pubsub_commands_are_recorded_alike_in_resp2_and_resp3():
    """Each (P|S)(UN)SUBSCRIBE is one entry, whatever the protocol: the reply scanner counts
    its confirmations (or its one error) off it; HELLO is recorded, and only its successful
    reply switches the protocol (test_pubsub_pairing.py)."""
    pending, _ = scan_requests(
        cmd("SUBSCRIBE", "a", "b") + cmd("UNSUBSCRIBE", "a", "b") + cmd("UNSUBSCRIBE")
    )
    assert pending == [SUBSCRIBE] * 3
    data = cmd("HELLO", "3") + cmd("SUBSCRIBE", "a") + cmd("SSUBSCRIBE", "s") + cmd("GET", "k")
    assert scan_requests(data)[0] == [HELLO3, SUBSCRIBE, SUBSCRIBE, NORMAL]
    assert scan_requests(data + cmd("RESET") + cmd("MONITOR"))[0] == [
        HELLO3, SUBSCRIBE, SUBSCRIBE, NORMAL, RESET, MONITOR,
    ]  # fmt: skip


# ---- replies -----------------------------------------------------------------------------
SLOTS_RESP2 = (
    b"*1\r\n*4\r\n:0\r\n:16383\r\n"
    b"*4\r\n$8\r\n10.0.0.1\r\n:6379\r\n$2\r\nid\r\n*2\r\n$8\r\nhostname\r\n$9\r\nn1.remote\r\n"
    b"*3\r\n$8\r\n10.0.0.2\r\n:6380\r\n$3\r\nid2\r\n"
)


def scan_replies(pending: list, data: bytes, step: int | None = None, ports=None):
    ports = ports or Ports()
    queue = Pending()
    for kind in pending:
        queue.add(kind)
    scanner = ReplyScanner(
        queue,
        lambda kind, frame: rewrite_reply(kind, frame, ports),
        lambda line: rewrite_redirect(line, ports),
    )
    out = []
    step = step or len(data)
    for i in range(0, len(data), step):
        out.append(b"".join(scanner.feed(data[i : i + step])))
    return b"".join(out), scanner, queue, ports


def test_replies_that_carry_no_address_pass_through_byte_for_byte():
    data = b"".join(FRAMES[:10] + FRAMES[11:16])  # all but the push: one request each
    for step in (1, 2, 5, len(data)):
        out, _, queue, _ = scan_replies([NORMAL] * 15, data, step)
        assert out == data and not queue


def test_a_topology_answer_is_paired_by_position_in_a_pipeline_and_rewritten():
    push = b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"  # no request: pops nothing
    data = b"$4\r\nslot\r\n" + push + SLOTS_RESP2 + b"+OK\r\n"
    for step in (1, 3, len(data)):
        out, _, queue, ports = scan_replies([NORMAL, SLOTS, NORMAL], data, step)
        assert not queue
        assert out.startswith(b"$4\r\nslot\r\n" + push) and out.endswith(b"+OK\r\n")
        # the hostname wins over the IP; the IP is passed along as an alias
        assert ports.calls[0] == ("n1.remote", 6379, "10.0.0.1")
        assert ports.calls[1] == ("10.0.0.2", 6380, None)
        assert b"10.0.0" not in out and b"n1.remote" not in out
        assert b"$9\r\n127.0.0.1\r\n:50001\r\n" in out and b":50002\r\n" in out


def test_the_same_bytes_as_a_get_reply_are_left_alone():
    out, *_ = scan_replies([NORMAL], SLOTS_RESP2)
    assert out == SLOTS_RESP2


def test_moved_and_ask_are_rewritten_wherever_they_appear():
    data = (
        b"-MOVED 3999 10.0.0.9:6381\r\n"
        b"*2\r\n-ASK 12 n2.remote:6379\r\n:1\r\n"  # nested, e.g. in an EXEC array
        b"-MOVED 7 :6390\r\n"  # empty host: the node this connection is on
        b"-ERR MOVED is not at the start\r\n"
    )
    out, _, _, ports = scan_replies([NORMAL] * 4, data, 1)
    assert out == (
        b"-MOVED 3999 127.0.0.1:50001\r\n*2\r\n-ASK 12 127.0.0.1:50002\r\n:1\r\n"
        b"-MOVED 7 127.0.0.1:50003\r\n-ERR MOVED is not at the start\r\n"
    )
    assert ports.table[("here.example", 6390)] == 50003


def test_exec_array_rewrites_only_the_topology_element():
    data = b"*3\r\n$1\r\nv\r\n" + SLOTS_RESP2 + b":7\r\n"
    out, _, queue, _ = scan_replies([(NORMAL, SLOTS, NORMAL)], data, 4)
    assert out.startswith(b"*3\r\n$1\r\nv\r\n*1\r\n*4\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n")
    assert out.endswith(b":7\r\n") and b"10.0.0" not in out and not queue
    aborted = b"-EXECABORT Transaction discarded\r\n"
    assert scan_replies([(NORMAL, SLOTS)], aborted)[0] == aborted


def test_monitor_and_resp2_subscribe_become_streams_until_reset():
    data = (
        b"+OK\r\n"  # MONITOR
        b'+1700000000.1 [0 127.0.0.1:5] "CLUSTER" "SLOTS"\r\n'
        b"-MOVED 1 10.1.1.1:7000\r\n"
        b"+RESET\r\n"
    ) + SLOTS_RESP2
    out, scanner, queue, _ = scan_replies([MONITOR, NORMAL, RESET, SLOTS], data, 2)
    assert b'"CLUSTER" "SLOTS"\r\n-MOVED 1 127.0.0.1:50001\r\n+RESET\r\n' in out
    assert b"10.0.0" not in out and not scanner.stream and not queue
    messages = (
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"
    )
    out, scanner, queue, _ = scan_replies([SUBSCRIBE, NORMAL], messages)
    assert out == messages and scanner.stream and queue.kinds() == [NORMAL]
    refused = b"-MOVED 5 10.0.0.5:6379\r\n"  # SSUBSCRIBE on the wrong node: no stream
    _, scanner, *_ = scan_replies([SUBSCRIBE], refused)
    assert not scanner.stream


def test_a_large_bulk_streams_without_being_held():
    payload = b"x" * 3_000_000
    frame = b"$%d\r\n%s\r\n" % (len(payload), payload)
    queue = Pending()
    queue.add(NORMAL)
    queue.add(SLOTS)
    scanner = ReplyScanner(queue, lambda k, f: b"REWRITTEN", lambda line: line)
    sent = 0
    for i in range(0, len(frame), 65536):
        chunk = frame[i : i + 65536]
        got = scanner.feed(chunk)
        assert got == [chunk]  # the very chunk, passed on at once
        sent += len(chunk)
    assert scanner.feed(SLOTS_RESP2[:10]) == [b""]  # a topology answer waits to be whole
    assert scanner.feed(SLOTS_RESP2[10:]) == [b"", b"REWRITTEN", b""]


# ---- rewriting ---------------------------------------------------------------------------
def test_cluster_slots_unknown_endpoint_means_the_connected_host():
    data = b"*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$1\r\n?\r\n:6379\r\n$2\r\nid\r\n"
    ports = Ports(here="cfg.remote")
    out = rewrite_reply(SLOTS, data, ports)
    assert out == b"*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:50001\r\n$2\r\nid\r\n"
    assert ports.table == {("cfg.remote", 6379): 50001}


def test_cluster_slots_resp3_metadata_map_with_ip_when_the_hostname_is_preferred():
    data = (
        b"*1\r\n*3\r\n:0\r\n:16383\r\n"
        b"*4\r\n$9\r\nn1.remote\r\n:6379\r\n$2\r\nid\r\n%1\r\n$2\r\nip\r\n$8\r\n10.0.0.1\r\n"
    )
    ports = Ports()
    out = rewrite_reply(SLOTS, data, ports)
    assert ports.calls == [("n1.remote", 6379, "10.0.0.1")]
    local_meta = b"%1\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
    assert out.endswith(b"$9\r\n127.0.0.1\r\n:50001\r\n$2\r\nid\r\n" + local_meta)


SHARD_NODE = (
    b"%8\r\n$2\r\nid\r\n$2\r\nab\r\n$4\r\nport\r\n:6379\r\n$8\r\ntls-port\r\n:6380\r\n"
    b"$2\r\nip\r\n$8\r\n10.0.0.1\r\n$8\r\nendpoint\r\n$9\r\nn1.remote\r\n"
    b"$8\r\nhostname\r\n$9\r\nn1.remote\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
    b"$6\r\nhealth\r\n$6\r\nonline\r\n"
)


@pytest.mark.parametrize("tls,port", [(False, 6379), (True, 6380)])
def test_cluster_shards_as_resp3_maps(tls, port):
    data = b"*1\r\n%2\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n" + SHARD_NODE
    ports = Ports()
    out = rewrite_reply(SHARDS, data, ports, tls)
    assert ports.calls == [("n1.remote", port, "10.0.0.1")]
    assert b"remote" not in out and b"10.0.0.1" not in out
    assert out.count(b"$9\r\n127.0.0.1\r\n") == 3 and out.count(b":50001\r\n") == 2
    assert b"$4\r\nrole\r\n$6\r\nmaster\r\n" in out


def test_cluster_shards_as_resp2_flat_arrays():
    node = (
        b"*8\r\n$2\r\nid\r\n$2\r\nab\r\n$4\r\nport\r\n:7001\r\n$2\r\nip\r\n$8\r\n10.0.0.3\r\n"
        b"$8\r\nendpoint\r\n$8\r\n10.0.0.3\r\n"
    )
    data = b"*1\r\n*4\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*1\r\n" + node
    ports = Ports()
    out = rewrite_reply(SHARDS, data, ports)
    assert ports.calls == [("10.0.0.3", 7001, None)]
    assert b"10.0.0.3" not in out and b"$4\r\nport\r\n:50001\r\n" in out


NODES_TEXT = (
    b"e7d1 10.0.0.1:6379@16379,n1.remote myself,master - 0 0 1 connected 0-8191\n"
    b"67ed 10.0.0.2:6379@16379 slave e7d1 0 1426238317239 4 connected\n"
    b"2922 :0@0 master,fail,noaddr - 1 2 3 disconnected\n"
)


def test_cluster_nodes_lines_bulk_and_verbatim():
    ports = Ports()
    bulk = b"$%d\r\n%s\r\n" % (len(NODES_TEXT), NODES_TEXT)
    out = rewrite_reply(NODES, bulk, ports)
    assert ports.calls == [("n1.remote", 6379, "10.0.0.1"), ("10.0.0.2", 6379, None)]
    text = out.split(b"\r\n", 1)[1]
    assert text.startswith(b"e7d1 127.0.0.1:50001@16379, myself,master - 0 0 1 connected 0-8191\n")
    assert b"67ed 127.0.0.1:50002@16379 slave e7d1" in text
    assert b"2922 :0@0 master,fail,noaddr" in text
    verbatim = b"=%d\r\ntxt:%s\r\n" % (len(NODES_TEXT) + 4, NODES_TEXT)
    out = rewrite_reply(NODES, verbatim, Ports())
    assert out.startswith(b"=") and b"\r\ntxt:e7d1 127.0.0.1:50001@16379," in out


def test_cluster_replicas_is_an_array_of_lines_and_aux_fields_stay():
    line = b"67ed 10.0.0.2:6379@16379,,shard-id=9f slave e7d1 0 1426238317239 4 connected"
    data = b"*1\r\n$%d\r\n%s\r\n" % (len(line), line)
    ports = Ports()
    out = rewrite_reply(NODES, data, ports)
    new = b"67ed 127.0.0.1:50001@16379,,shard-id=9f slave e7d1 0 1426238317239 4 connected"
    assert out == b"*1\r\n$%d\r\n%s\r\n" % (len(new), new)
    assert ports.calls == [("10.0.0.2", 6379, None)]


def test_an_error_answer_to_a_topology_command_is_left_alone():
    err = b"-ERR This instance has cluster support disabled\r\n"
    for kind in (SLOTS, SHARDS, NODES):
        assert rewrite_reply(kind, err, Ports()) == err


def test_pipelined_values_holding_crlf_keep_the_count_until_a_later_topology_answer():
    """Runs of small replies are counted in bulk; values that look like frames must not
    shift the count that places a CLUSTER SLOTS answer sent later."""
    values = [b"plain", b"a\r\n$3\r\nxyz", b"$1\r\n", b"\r\n", b"ok", b"x" * 2000, b"12\r\n+OK"]
    replies = [b"$%d\r\n%s\r\n" % (len(v), v) for v in values] * 8 + [b"+OK\r\n", b":5\r\n"] * 4
    pending = Pending()
    pending.add(NORMAL, len(replies))
    ports = Ports()
    scanner = ReplyScanner(
        pending,
        lambda kind, frame: rewrite_reply(kind, frame, ports),
        lambda line: rewrite_redirect(line, ports),
    )
    half = len(replies) // 2
    first = b"".join(replies[:half])
    assert b"".join(scanner.feed(first)) == first
    pending.add(SLOTS)  # sent while the rest of the pipeline is still on its way
    rest = b"".join(replies[half:]) + SLOTS_RESP2
    out = b"".join(scanner.feed(rest))
    assert out.startswith(b"".join(replies[half:]))
    assert b"10.0.0" not in out and b":50001\r\n" in out and len(pending) == 0


@pytest.mark.parametrize("c", [False, True])
def test_a_large_argument_streams_through_the_request_side(c):
    data = cmd("SET", "k", b"v" * 3_000_000) + cmd("CLUSTER", "SLOTS") + cmd("GET", "k")
    pending = Pending()
    scanner = CommandScanner(pending, use_hiredis=c)
    for i in range(0, len(data), 65536):
        scanner.feed(data[i : i + 65536])
        assert len(scanner._hold) < 100  # the value is skipped by length, never held
    assert pending.kinds() == [NORMAL, SLOTS, NORMAL]
