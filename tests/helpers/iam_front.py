"""A TLS front that plays ElastiCache's IAM authentication in front of a real redis-server.

    front = IamFront(backend, backend_tls, front_tls, IamRules(...)).start()
    ... the client dials front.port (TLS), sends AUTH <user> <token>
    front.accepted / front.rejected      # parsed tokens / reasons
    front.stop()

The first command must be AUTH user token (or HELLO n AUTH user token). The token is checked
as ElastiCache documents it, independently of the code under test: host = the resource
(replication group id / serverless cache name), path /, Action=connect, User=<user>,
ResourceType=ServerlessCache for serverless (and only then), X-Amz-Algorithm AWS4-HMAC-SHA256,
credential scope <key>/<date>/<region>/elasticache/aws4_request, X-Amz-Expires <= 900 and not
past, SignedHeaders=host, and the signature recomputed here from the test's own secret key
with the SigV4 algorithm (HMAC-SHA256 chain, written out below from the AWS specification,
not botocore's signer). A valid token is swapped for the ACL user's real password on a TLS
link to the real redis-server; then bytes are relayed both ways. A bad token gets WRONGPASS,
which is what ElastiCache answers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlsplit

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"


@dataclass
class IamRules:
    user: str
    resource: str
    region: str
    serverless: bool
    access_key: str
    secret_key: str
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def check_token(token: str, user: str, rules: IamRules) -> tuple[str | None, dict[str, str]]:
    """(None, params) for a token ElastiCache would accept; (reason, params) otherwise."""
    if token.startswith(("http://", "https://")):
        return "the token must not carry a scheme", {}
    url = urlsplit("https://" + token)
    pairs = parse_qsl(url.query, keep_blank_values=True)
    params = dict(pairs)
    if len(params) != len(pairs):
        return "a query parameter repeats", params
    if url.hostname != rules.resource or url.netloc != rules.resource:
        return f"resource {url.netloc!r}, expected {rules.resource!r}", params
    if url.path != "/":
        return f"path {url.path!r}", params
    if params.get("Action") != "connect":
        return "Action is not connect", params
    if params.get("User") != user or user != rules.user:
        return f"User {params.get('User')!r} (AUTH user {user!r}), expected {rules.user!r}", params
    if rules.serverless != (params.get("ResourceType") == "ServerlessCache"):
        kind = params.get("ResourceType")
        return f"ResourceType {kind!r} for serverless={rules.serverless}", params
    if "ResourceType" in params and params["ResourceType"] != "ServerlessCache":
        return "unknown ResourceType", params
    if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
        return "X-Amz-Algorithm", params
    amz_date = params.get("X-Amz-Date", "")
    try:
        signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
        expires = int(params.get("X-Amz-Expires", ""))
    except ValueError:
        return "X-Amz-Date / X-Amz-Expires unreadable", params
    scope = f"{amz_date[:8]}/{rules.region}/elasticache/aws4_request"
    if params.get("X-Amz-Credential") != f"{rules.access_key}/{scope}":
        return f"credential {params.get('X-Amz-Credential')!r}, expected scope {scope}", params
    if not 0 < expires <= 900:
        return f"X-Amz-Expires {expires} (at most 900)", params
    now = rules.now()
    if now > signed_at + dt.timedelta(seconds=expires):
        return "the token has expired", params
    if signed_at > now + dt.timedelta(minutes=5):
        return "the token is signed in the future", params
    if params.get("X-Amz-SignedHeaders") != "host":
        return "X-Amz-SignedHeaders", params
    unsigned = sorted(
        (quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs if k != "X-Amz-Signature"
    )
    canonical = "\n".join(
        [
            "GET",
            "/",
            "&".join(f"{k}={v}" for k, v in unsigned),
            f"host:{url.netloc}",
            "",
            "host",
            EMPTY_SHA256,
        ]
    )
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + rules.secret_key).encode()
    for part in (amz_date[:8], rules.region, "elasticache", "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, params.get("X-Amz-Signature", "")):
        return "signature does not match", params
    return None, params


def _read_command(conn: ssl.SSLSocket) -> list[bytes] | None:
    """One RESP array of bulk strings (what redis-py sends)."""
    buf = conn.makefile("rb")
    line = buf.readline()
    if not line.startswith(b"*"):
        return None
    out = []
    for _ in range(int(line[1:])):
        size = int(buf.readline()[1:])
        out.append(buf.read(size + 2)[:-2])
    return out


def _resp(*parts: str) -> bytes:
    out = f"*{len(parts)}\r\n".encode()
    for p in parts:
        data = p.encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return out


@dataclass
class IamFront:
    backend: tuple[str, int]
    backend_ca: str
    cert: str
    key: str
    rules: IamRules
    backend_password: str
    accepted: list[dict[str, str]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def start(self) -> IamFront:
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(self.cert, self.key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._running = True
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._running = False
        self._listener.close()
        # shutdown, not close: a relay thread may be inside SSL_read on one of these, and
        # OpenSSL keeps the fd number - closing it here would let a later connection reuse
        # the number and have its bytes read by that stale thread. The threads close them.
        with self._lock:
            for s in self._socks:
                _shutdown(s)

    def _accept(self) -> None:
        while self._running:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        with self._lock:
            self._socks.append(raw)
        try:
            conn = self._ctx.wrap_socket(raw, server_side=True)
            with self._lock:
                self._socks.append(conn)
            cmd = _read_command(conn)
            words = [c.decode() for c in cmd or []]
            upper = [w.upper() for w in words]
            if upper[:1] == ["AUTH"] and len(words) == 3:
                user, token = words[1], words[2]
            elif upper[:1] == ["HELLO"] and "AUTH" in upper:
                i = upper.index("AUTH")
                user, token = words[i + 1], words[i + 2]
            else:
                self.rejected.append(f"first command {upper[:1]} is not AUTH user token")
                conn.sendall(b"-NOAUTH Authentication required.\r\n")
                conn.close()
                return
            reason, params = check_token(token, user, self.rules)
            if reason:
                self.rejected.append(reason)
                conn.sendall(WRONGPASS)
                conn.close()
                return
            self.accepted.append(params)
            upstream = self._upstream(user)
            if upper[0] == "HELLO":  # replay HELLO without the IAM AUTH part
                i = upper.index("AUTH")
                upstream.sendall(_resp(*(words[:i] + words[i + 3 :])))
            else:
                conn.sendall(b"+OK\r\n")
            self._relay(conn, upstream)
        except (OSError, ssl.SSLError, ValueError):
            return

    def _upstream(self, user: str) -> ssl.SSLSocket:
        ctx = ssl.create_default_context(cafile=self.backend_ca)
        ctx.check_hostname = False
        sock = ctx.wrap_socket(socket.create_connection(self.backend, timeout=10))
        sock.settimeout(None)
        with self._lock:
            self._socks.append(sock)
        sock.sendall(_resp("AUTH", user, self.backend_password))
        reply = sock.recv(64)
        if not reply.startswith(b"+OK"):
            raise OSError(f"backend refused the ACL user: {reply!r}")
        return sock

    def _relay(self, a: ssl.SSLSocket, b: ssl.SSLSocket) -> None:
        def pump(src: ssl.SSLSocket, dst: ssl.SSLSocket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except (OSError, ValueError):
                pass
            # wake the other direction with EOF, but free no fd while it may still read
            _shutdown(src)
            _shutdown(dst)

        other = threading.Thread(target=pump, args=(b, a), daemon=True)
        other.start()
        pump(a, b)
        other.join(10)
        for sock in (a, b):  # both directions are done: now the fds can go
            try:
                sock.close()
            except OSError:
                pass


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


def start_iam_backend(
    base, user: str, password: str, front_names: tuple[str, ...], front_ips: tuple[str, ...]
):
    """(server, its TLS files, the front's TLS files): a TLS redis-server whose only user is
    the ElastiCache user id `user` (default user off), and a certificate for the front that
    names `front_names` and `front_ips`."""
    from closeup_ops.local.certs import make_tls_files
    from closeup_ops.local.servers import redis_cli, start_redis

    backend_tls = make_tls_files(base / "backend-tls")
    server = start_redis(base / "server", tls=backend_tls)
    redis_cli(
        server, "ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", tls=backend_tls
    )
    redis_cli(server, "ACL", "SETUSER", "default", "off", tls=backend_tls)
    front_tls = make_tls_files(base / "front-tls", names=front_names, ips=front_ips)
    return server, backend_tls, front_tls
