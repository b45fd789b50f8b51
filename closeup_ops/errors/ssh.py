"""SSH failures (paramiko exceptions, OpenSSH's stderr) -> one actionable line.

Exit codes (SPEC): 3 when the bastion or the cache cannot be reached, 4 when the bastion
does not let us in (key, user, host key, forwarding not permitted).
"""

from __future__ import annotations

from closeup_ops.errors import types as errors
from closeup_ops.errors.types import AuthError, ConnectError, OpsError

KEY_HINT = (
    "check BASTION_USER (ec2-user on Amazon Linux, ubuntu on Ubuntu) and that the key's "
    "public half is in the bastion's ~/.ssh/authorized_keys"
)
REACH_HINT = (
    "check BASTION_HOST/BASTION_PORT, that sshd runs there and that its security group "
    "allows SSH (port 22) from this address"
)
FORWARD_HINT = (
    "the bastion's sshd must allow it: AllowTcpForwarding yes (and PermitOpen any or the "
    "cache endpoint) in /etc/ssh/sshd_config"
)


def _bastion() -> str:
    return str(errors.CONTEXT.get("bastion") or "the bastion")


def unreachable(where: str, reason: str) -> ConnectError:
    return ConnectError(f"cannot reach bastion {where}: {reason}", REACH_HINT)


def auth_refused(where: str, detail: str = "") -> AuthError:
    extra = f" ({detail})" if detail else ""
    return AuthError(f"bastion {where} refused the SSH login{extra}", KEY_HINT)


def forward_refused(dest: str, where: str) -> AuthError:
    return AuthError(
        f"bastion {where} refused to forward to {dest} (administratively prohibited)",
        FORWARD_HINT,
    )


def forward_failed(dest: str, where: str, reason: str) -> ConnectError:
    return ConnectError(
        f"bastion {where} cannot open {dest} ({reason})",
        "check the endpoint name and port, and that the cache's security group allows the "
        "bastion (closeup-ops sg allow --from-sg <bastion security group>)",
    )


def map_ssh_error(exc: BaseException) -> OpsError:
    """A paramiko/sshtunnel exception that escaped the tunnel code -> OpsError."""
    import paramiko

    where = _bastion()
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, paramiko.BadHostKeyException):
        return AuthError(
            f"the host key of bastion {where} does not match known_hosts",
            "if the bastion was rebuilt remove its old line (ssh-keygen -R) and rerun with "
            "--accept-new-host-key; otherwise do not connect",
        )
    if isinstance(exc, paramiko.PasswordRequiredException):
        return AuthError(
            "the bastion key is protected by a passphrase",
            "load it into the SSH agent (ssh-add KEY) and unset BASTION_KEY",
        )
    if isinstance(exc, (paramiko.AuthenticationException, paramiko.BadAuthenticationType)):
        return auth_refused(where, text)
    if isinstance(exc, paramiko.ChannelException):
        if exc.code == 1:
            return forward_refused("the cache", where)
        return forward_failed("the cache", where, text)
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return unreachable(where, "connection refused")
    if "banner" in text.lower():
        return unreachable(where, "it did not answer as an SSH server")
    return ConnectError(f"SSH to bastion {where} failed: {text}", REACH_HINT)


def map_ssh_stderr(text: str, where: str, local_ports: list[int]) -> OpsError:
    """What OpenSSH printed before it exited -> OpsError."""
    low = text.lower()
    last = next((ln for ln in reversed(text.strip().splitlines()) if ln.strip()), "")
    if "address already in use" in low or "could not request local forwarding" in low:
        ports = ", ".join(str(p) for p in local_ports)
        return ConnectError(
            f"a local port of the tunnel ({ports}) is already in use",
            "pass another --local-port, or stop what listens there",
        )
    if "permission denied" in low or "too many authentication failures" in low:
        return auth_refused(where, last.strip())
    if "host key verification failed" in low or "remote host identification" in low:
        return AuthError(
            f"OpenSSH rejected the host key of bastion {where}",
            "rerun; if it persists the host key changed while connecting",
        )
    if "administratively prohibited" in low:
        return forward_refused("the cache", where)
    if any(
        s in low
        for s in (
            "connection refused",
            "timed out",
            "no route",
            "unreachable",
            "could not resolve",
            "name or service not known",
            "connection closed",
            "connection reset",
        )
    ):
        return unreachable(where, last.strip() or "connection failed")
    return ConnectError(
        f"ssh to bastion {where} exited: {last.strip() or 'no message'}", REACH_HINT
    )
