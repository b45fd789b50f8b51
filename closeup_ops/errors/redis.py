"""Redis client exceptions -> one actionable line with SPEC's exit code."""

from __future__ import annotations

import redis.exceptions as rx

from closeup_ops.errors import types as errors
from closeup_ops.errors.types import AuthError, ConnectError, OpsError

TUNNEL_HINT = "from outside the VPC open a tunnel with `closeup-ops tunnel`"


def map_redis_error(exc: BaseException, endpoint: str | None) -> OpsError:
    where = endpoint or "the server"
    text = str(exc)
    # redis-py 8 keeps the server's code in status_code and the socket error in __context__
    status = str(getattr(exc, "status_code", None) or "")
    cause = exc.__cause__ or exc.__context__
    upper = f"{status} {text} {cause or ''}".upper()
    timeout = errors.CONTEXT.get("timeout", "?")
    tls = bool(errors.CONTEXT.get("tls"))

    # the cluster client wraps a node's auth failure in "Redis Cluster cannot be connected"
    if isinstance(exc, rx.AuthenticationError) or isinstance(cause, rx.AuthenticationError):
        return _auth(where, text, upper)
    if "WRONGPASS" in upper or "NOAUTH" in upper:
        return _auth(where, text, upper)
    if "NOPERM" in upper:
        return AuthError(
            f"{where}: the user lacks permission ({text.split(chr(10))[0]})",
            "grant the ACL user the command (e.g. +@keyspace +@read) or use another user",
        )
    if tls and "HANDSHAKE" in upper and ("TIMED OUT" in upper or "TIMEOUT" in upper):
        return ConnectError(
            f"TLS handshake with {where} timed out after {_num(timeout)} s: the server "
            "probably does not speak TLS",
            "set REDIS_TLS=false (or --no-tls) for a plain server; else check the network",
        )
    if isinstance(exc, rx.TimeoutError) or "TIMED OUT" in upper or "TIMEOUT" in upper:
        return ConnectError(
            f"connection to {where} timed out after {_num(timeout)} s",
            f"{TUNNEL_HINT}; check the security group allows this client on the port, "
            "or raise REDIS_TIMEOUT",
        )
    if isinstance(exc, rx.ConnectionError) or isinstance(exc, OSError):
        return _connection(where, text, upper, tls)
    if isinstance(exc, (rx.ClusterDownError, rx.ClusterError, rx.RedisClusterException)):
        return ConnectError(f"cluster at {where} is not usable: {text}", "check CLUSTER INFO")
    if isinstance(exc, rx.ReadOnlyError):
        return ConnectError(
            f"{where} is a read-only replica", "point REDIS_HOST at the primary endpoint"
        )
    if isinstance(exc, rx.ResponseError):
        return OpsError(f"{where} answered with an error: {text}", "see the server's message")
    return OpsError(
        f"redis error from {where}: {type(exc).__name__}: {text}", "rerun with --verbose"
    )


def _auth(where: str, text: str, upper: str) -> AuthError:
    if "WITHOUT ANY PASSWORD CONFIGURED" in upper or "NO PASSWORD IS SET" in upper:
        return AuthError(
            f"{where} has no password but one was sent",
            "unset REDIS_PASSWORD (and REDIS_USERNAME)",
        )
    if any(s in upper for s in ("NOAUTH", "AUTHENTICATION REQUIRED", "ALREADY AUTHENTICATED")):
        return AuthError(
            f"{where} requires authentication (NOAUTH)",
            "set REDIS_PASSWORD (and REDIS_USERNAME for an ACL/RBAC user) in the environment "
            "or .env, or pass --ask-password",
        )
    return AuthError(
        f"authentication to {where} failed (WRONGPASS: wrong user name or password)",
        "check REDIS_USERNAME and REDIS_PASSWORD (an IAM token needs REDIS_IAM_AUTH=true)",
    )


def _connection(where: str, text: str, upper: str, tls: bool) -> ConnectError:
    if any(
        s in upper
        for s in (
            "NAME OR SERVICE NOT KNOWN",
            "NODENAME NOR SERVNAME",
            "TEMPORARY FAILURE IN NAME",
            "NO ADDRESS ASSOCIATED",
            "ERROR -2 ",
            "ERROR -3 ",
            "ERROR -5 ",
        )
    ):
        return ConnectError(
            f"cannot resolve the host of {where}",
            "check REDIS_HOST; ElastiCache names resolve only inside the VPC: " + TUNNEL_HINT,
        )
    if "REFUSED" in upper or "ERROR 111" in upper:
        return ConnectError(
            f"connection to {where} refused",
            "check REDIS_HOST/REDIS_PORT and that the server is running",
        )
    if "CERTIFICATE_VERIFY_FAILED" in upper or "CERTIFICATE VERIFY FAILED" in upper:
        reason = text.split("certificate verify failed:")[-1].split("(")[0].strip(" )")
        return ConnectError(
            f"TLS certificate of {where} not trusted ({reason or 'verify failed'})",
            "set REDIS_CA_CERT to the CA bundle, or REDIS_TLS_SERVER_NAME to the name in the "
            "certificate when tunnelling",
        )
    if tls and any(
        s in upper
        for s in (
            "WRONG_VERSION_NUMBER",
            "WRONG VERSION NUMBER",
            "RECORD_LAYER_FAILURE",
            "UNEXPECTED EOF",
            "SSL",
            "PACKET_LENGTH_TOO_LONG",
            "HTTP_REQUEST",
        )
    ):
        return ConnectError(
            f"TLS handshake with {where} failed: the server does not speak TLS",
            "set REDIS_TLS=false (or --no-tls) for this server",
        )
    if not tls and any(
        s in upper
        for s in ("CLOSED BY SERVER", "RESET BY PEER", "ERROR 104", "ERROR 32 ", "BROKEN PIPE")
    ):
        return ConnectError(
            f"{where} closed the connection: the server probably expects TLS",
            "set REDIS_TLS=true (or --tls) and REDIS_CA_CERT if it uses a private CA",
        )
    first = text.split("\n")[0]
    return ConnectError(f"cannot connect to {where}: {first}", TUNNEL_HINT)


def _num(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
