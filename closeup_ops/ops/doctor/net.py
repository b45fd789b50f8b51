"""`doctor`'s first checks, on plain sockets: settings, DNS, TCP and TLS (or plain RESP).

Plain sockets tell each failure apart from the next (redis-py folds them all into
ConnectionError): a refused port, a dropped packet, a TLS server spoken to in plain text
(it resets the connection) and a plain server spoken to in TLS (it waits for a newline
that never comes, so the handshake times out; a plain PING then proves the mismatch).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from closeup_ops import errors
from closeup_ops.settings import Settings

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
TUNNEL = "`closeup-ops tunnel` (or --via-bastion)"
PING_FRAME = b"*1\r\n$4\r\nPING\r\n"


@dataclass
class Check:
    name: str
    status: str
    evidence: str
    fix: str | None = None


@dataclass
class Probe:
    """What the earlier checks learned, for the later ones."""

    settings: Settings
    address: str | None = None  # the resolved IP we dial
    local_ip: str | None = None  # our side of the TCP connection
    client: Any = None  # redis.Redis on the entry node, after AUTH
    server_tls: bool | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def explain(exc: BaseException, endpoint: str | None = None) -> tuple[str, str | None]:
    """Any exception as (what failed, what to do), through the one error mapper."""
    err = errors.classify(exc, endpoint)
    return errors.scrub(err.message), err.hint


# --- the checks -----------------------------------------------------------------------


def check_settings(p: Probe) -> Check:
    s = p.settings
    tls = "on" if s.use_tls else "off"
    if s.tls is None:
        tls += " (auto: serverless endpoint)" if s.serverless else " (auto)"
    if s.iam_auth:
        auth = f"IAM token as {s.username}"
    elif s.password:
        auth = f"password as {s.username}" if s.username else "password"
    else:
        auth = f"user {s.username}, no password" if s.username else "none"
    cluster = {None: "auto", True: "on", False: "off"}[s.cluster]
    evidence = (
        f"{s.endpoint}, TLS {tls}, auth {auth}, db {s.db}, cluster {cluster}, "
        f"timeout {s.timeout:g} s"
    )
    if s.serverless and s.db:
        return Check(
            "settings",
            FAIL,
            f"REDIS_DB={s.db} but {s.host} is serverless, which "
            "runs in cluster mode (database 0 only)",
            "unset REDIS_DB or set it to 0",
        )
    if s.insecure and s.use_tls:
        return Check(
            "settings",
            WARN,
            evidence + "; --insecure: the certificate is NOT verified",
            "drop --insecure and set REDIS_CA_CERT to the CA bundle",
        )
    if s.ca_cert and not s.use_tls:
        return Check(
            "settings",
            WARN,
            evidence + "; REDIS_CA_CERT is set but TLS is off",
            "set REDIS_TLS=true, or unset REDIS_CA_CERT",
        )
    return Check("settings", OK, evidence)


def check_dns(p: Probe) -> Check:
    host, port = p.settings.host, p.settings.port
    dialled, _ = p.settings.dial(host, port)
    if dialled != host:
        p.address = dialled
        return Check("dns", OK, f"{host}:{port} -> {dialled} (REDIS_RESOLVE; DNS not asked)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return Check(
            "dns",
            FAIL,
            f"{host} does not resolve ({exc.strerror})",
            "check REDIS_HOST for typos; ElastiCache names resolve only inside the "
            f"cache's VPC: run from a host in the VPC or through {TUNNEL}",
        )
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    p.address = addresses[0]
    shown = ", ".join(addresses[:3]) + (" ..." if len(addresses) > 3 else "")
    what = f"{host} is an address" if host in addresses else f"{host} resolves to {shown}"
    ip = ipaddress.ip_address(p.address)
    # Loopback is a local server or a tunnel's local end, not a sign of a VPC-only cache.
    if ip.is_loopback:
        return Check("dns", OK, f"{what} (loopback: a local server or a tunnel)")
    if ip.is_private:
        return Check(
            "dns",
            WARN,
            f"{what}, a private address: the cache is reachable only from inside its VPC",
            f"from outside the VPC use {TUNNEL}",
        )
    return Check("dns", OK, what)


def check_tcp(p: Probe) -> Check:
    s = p.settings
    where = f"{p.address}:{s.port}"
    sg_fix = (
        f"allow inbound TCP {s.port} from this client's security group or address in "
        f"the cache's security group (`closeup-ops sg allow --port {s.port}`), and run "
        f"from inside the cache's VPC (or a peered one) or through {TUNNEL}"
    )
    try:
        with socket.create_connection((p.address, s.port), timeout=s.timeout) as sock:
            p.local_ip = sock.getsockname()[0]
    except ConnectionRefusedError:
        return Check(
            "tcp",
            FAIL,
            f"{where} refused the connection: nothing listens there",
            "check REDIS_PORT (ElastiCache: 6379, serverless reader 6380) and that "
            "the server is running",
        )
    except TimeoutError:
        return Check(
            "tcp",
            FAIL,
            f"no answer from {where} within {s.timeout:g} s "
            "(packets dropped: a security group or the network)",
            sg_fix,
        )
    except OSError as exc:
        return Check("tcp", FAIL, f"cannot reach {where}: {exc.strerror or exc}", sg_fix)
    return Check("tcp", OK, f"connected to {where} from {p.local_ip}")


def _tls_context(s: Settings, verify: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=s.ca_cert)
    if s.insecure or not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _handshake(p: Probe, verify: bool = True) -> tuple[str, dict]:
    s = p.settings
    sock = socket.create_connection((p.address, s.port), timeout=s.timeout)
    try:
        tls_sock = _tls_context(s, verify).wrap_socket(sock, server_hostname=s.server_name)
    except BaseException:
        sock.close()
        raise
    with tls_sock:
        return str(tls_sock.version()), tls_sock.getpeercert() or {}


def _plain_reply(p: Probe) -> bytes:
    """The first bytes a plain-text PING gets back (b"" when the server just closes)."""
    with socket.create_connection((p.address, p.settings.port), timeout=p.settings.timeout) as sock:
        sock.sendall(PING_FRAME)
        return sock.recv(64)


def _speaks_plain_redis(p: Probe) -> bool:
    try:
        return _plain_reply(p)[:1] in (b"+", b"-")
    except OSError:
        return False


def _speaks_tls(p: Probe) -> bool:
    try:
        _handshake(p, verify=False)
        return True
    except (OSError, ssl.SSLError):
        return False


def check_tls(p: Probe) -> Check:
    return _check_tls_on(p) if p.settings.use_tls else _check_tls_off(p)


def _check_tls_on(p: Probe) -> Check:
    s = p.settings
    silent = f"no TLS handshake from {p.address}:{s.port} within {s.timeout:g} s"
    try:
        version, cert = _handshake(p)
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or str(exc)
        if "hostname" in reason.lower() or "ip address mismatch" in reason.lower():
            fix = (
                f"the certificate does not name {s.server_name}: set "
                "REDIS_TLS_SERVER_NAME to the endpoint name in the certificate (tunnels)"
            )
        else:
            fix = "set REDIS_CA_CERT to the CA bundle that signed the server's certificate"
        return Check("tls", FAIL, f"certificate not trusted: {reason}", fix)
    except (TimeoutError, ssl.SSLError, ConnectionError) as exc:
        if _speaks_plain_redis(p):
            return Check(
                "tls",
                FAIL,
                f"TLS handshake failed ({_short(exc)}) but the server "
                "answers plain Redis: it does not use TLS",
                "set REDIS_TLS=false (or --no-tls) for this server",
            )
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return Check(
                "tls",
                FAIL,
                silent + ", and no reply to a plain PING either",
                "something else listens on this port: check REDIS_HOST/REDIS_PORT, "
                "or raise REDIS_TIMEOUT if the server is slow",
            )
        return Check(
            "tls",
            FAIL,
            f"TLS handshake failed: {_short(exc)}",
            "check REDIS_PORT and that the cache has in-transit encryption on",
        )
    p.server_tls = True
    if s.insecure:
        return Check(
            "tls",
            WARN,
            f"{version} handshake; certificate NOT verified (--insecure)",
            "set REDIS_CA_CERT and drop --insecure",
        )
    expires = cert.get("notAfter")
    days = (ssl.cert_time_to_seconds(expires) - time.time()) / 86400 if expires else None
    evidence = f"{version}, certificate verified for {s.server_name}"
    if days is not None and days < 14:
        return Check(
            "tls",
            WARN,
            f"{evidence}, expires in {days:.0f} days ({expires})",
            "renew the server certificate",
        )
    if expires:
        evidence += f", valid until {expires}"
    return Check("tls", OK, evidence)


def _check_tls_off(p: Probe) -> Check:
    s = p.settings
    where = f"{p.address}:{s.port}"
    try:
        reply = _plain_reply(p)
    except TimeoutError:
        return Check(
            "tls",
            FAIL,
            f"connected to {where} but no reply to PING within {s.timeout:g} s",
            "something at this port accepts connections but does "
            "not answer Redis: check REDIS_HOST/REDIS_PORT, or raise REDIS_TIMEOUT",
        )
    except ConnectionError:
        reply = b""
    if reply[:1] in (b"+", b"-"):
        p.server_tls = False
        return Check("tls", OK, "TLS off; the server answers plain Redis")
    if not reply:
        if _speaks_tls(p):
            return Check(
                "tls",
                FAIL,
                f"{where} dropped a plain connection and accepts a TLS "
                "handshake: the server expects TLS",
                "set REDIS_TLS=true (or --tls), and REDIS_CA_CERT for a private CA",
            )
        return Check(
            "tls",
            FAIL,
            f"{where} closed the connection without a reply",
            "check REDIS_PORT; if the cache has in-transit encryption set REDIS_TLS=true",
        )
    return Check(
        "tls",
        FAIL,
        f"{where} answered, but not in the Redis protocol ({reply[:16]!r})",
        "check REDIS_HOST/REDIS_PORT point at the cache",
    )


def _short(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return str(text).split("\n")[0][:120]
