"""Check the bastion before any bytes flow: its host key against known_hosts, our key, and
that it will forward to the cache. Every failure becomes one line with what to do next.

paramiko does this part because it tells us exactly what went wrong (and the fingerprint
of an unknown host key); the forward itself runs in OpenSSH (see connect/tunnel/session.py).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from closeup_ops import output
from closeup_ops.errors import AuthError, ConnectError, UsageError
from closeup_ops.errors import ssh as ssh_errors
from closeup_ops.settings import Settings

DEFAULT_IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")


@dataclass(frozen=True)
class Bastion:
    host: str
    port: int
    user: str
    key: str | None  # private key file; None: the SSH agent, then ~/.ssh/id_*
    known_hosts: Path
    accept_new: bool = False
    timeout: float = 10.0

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def known_name(self) -> str:
        """How OpenSSH names this host in known_hosts."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def bastion_from(
    settings: Settings, known_hosts: str | None = None, accept_new: bool = False
) -> Bastion:
    if not settings.bastion_host:
        raise UsageError(
            "no bastion host to tunnel through", "set BASTION_HOST or pass --bastion HOST"
        )
    known = known_hosts or settings.bastion_known_hosts or "~/.ssh/known_hosts"
    return Bastion(
        host=settings.bastion_host,
        port=settings.bastion_port,
        user=settings.bastion_user,
        key=settings.bastion_key,
        known_hosts=Path(known).expanduser(),
        accept_new=accept_new,
        timeout=max(settings.timeout, 5.0),
    )


def load_keys(bastion: Bastion) -> list[Any]:
    """The keys to offer: BASTION_KEY, else the agent's, else ~/.ssh/id_* without passphrase."""
    import paramiko

    if bastion.key:
        return [_key_file(Path(bastion.key))]
    keys: list[Any] = []
    try:
        keys.extend(paramiko.Agent().get_keys())
    except paramiko.SSHException:
        pass
    for name in DEFAULT_IDENTITIES:
        path = Path("~/.ssh").expanduser() / name
        if path.is_file():
            try:
                keys.append(paramiko.PKey.from_path(path))
            except (paramiko.SSHException, ValueError, OSError):
                continue  # a passphrase-protected default key belongs in the agent
    if not keys:
        raise AuthError(
            "no SSH key to log in to the bastion",
            "set BASTION_KEY (or --bastion-key) to the private key file, or load the key "
            "into ssh-agent (ssh-add)",
        )
    return keys


def _key_file(path: Path) -> Any:
    import paramiko

    if not path.is_file():
        raise AuthError(
            f"BASTION_KEY {path} does not exist",
            "point BASTION_KEY (or --bastion-key) at the private key file, e.g. ~/.ssh/bastion.pem",
        )
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise AuthError(
            f"BASTION_KEY {path} is readable by others (mode {mode:o})",
            f"run `chmod 600 {path}` (OpenSSH refuses such keys too)",
        )
    try:
        return paramiko.PKey.from_path(path)
    except paramiko.PasswordRequiredException:
        raise AuthError(
            f"BASTION_KEY {path} is protected by a passphrase",
            f"load it into the SSH agent (ssh-add {path}) and unset BASTION_KEY",
        ) from None
    except (paramiko.SSHException, ValueError, UnicodeError, OSError) as exc:
        raise AuthError(
            f"BASTION_KEY {path} is not a private key that can be read ({exc})",
            "point it at the private key (not the .pub file)",
        ) from None


def check(bastion: Bastion, probe: tuple[str, int] | None = None) -> Any:
    """Connect, verify the host key, log in, and (with `probe`) open a forward to it once.

    Returns the verified host key (paramiko PKey). Raises OpsError subclasses.
    """
    transport = connect(bastion, probe)
    try:
        return transport.get_remote_server_key()
    finally:
        transport.close()


TUNED = {"default_window_size": 64 << 20, "default_max_packet_size": 256 << 10}
FAST_CIPHER = "aes128-gcm@openssh.com"


def connect(bastion: Bastion, probe: tuple[str, int] | None = None, tuned: bool = False) -> Any:
    """An authenticated paramiko Transport to the bastion, host key verified (see check).

    `tuned`: the large window and packets and AES-GCM that a forwarder needs for speed."""
    import paramiko

    keys = load_keys(bastion)  # a missing or unsafe key fails before the network
    sock = _dial(bastion)
    if tuned:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock, **(TUNED if tuned else {}))
    try:
        options = transport.get_security_options()
        if tuned and FAST_CIPHER in options.ciphers:
            options.ciphers = (FAST_CIPHER,) + tuple(c for c in options.ciphers if c != FAST_CIPHER)
        known = _known_keys(bastion)
        if known:
            # Ask for the key types we already trust, as OpenSSH does.
            options.key_types = tuple(known)
        try:
            transport.start_client(timeout=bastion.timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ssh_errors.unreachable(
                f"{bastion.host}:{bastion.port}", f"SSH handshake failed: {exc or 'closed'}"
            ) from None
        verify_host_key(bastion, transport.get_remote_server_key(), known)
        _login(transport, bastion, keys)
        if probe is not None:
            probe_forward(transport, bastion, probe)
        return transport
    except BaseException:
        transport.close()
        raise


def _dial(bastion: Bastion) -> socket.socket:
    try:
        return socket.create_connection((bastion.host, bastion.port), timeout=bastion.timeout)
    except socket.gaierror:
        raise ssh_errors.unreachable(bastion.host, "the name does not resolve") from None
    except TimeoutError:
        raise ssh_errors.unreachable(
            f"{bastion.host}:{bastion.port}", f"timed out after {bastion.timeout:g} s"
        ) from None
    except OSError as exc:
        raise ssh_errors.unreachable(
            f"{bastion.host}:{bastion.port}", exc.strerror or str(exc)
        ) from None


def _known_keys(bastion: Bastion) -> dict[str, Any]:
    import paramiko

    if not bastion.known_hosts.is_file():
        return {}
    hostkeys = paramiko.HostKeys()
    try:
        hostkeys.load(str(bastion.known_hosts))
    except (OSError, paramiko.SSHException) as exc:
        raise UsageError(
            f"cannot read known_hosts {bastion.known_hosts}: {exc}", "fix or replace the file"
        ) from None
    entry = hostkeys.lookup(bastion.known_name)
    return dict(entry) if entry else {}


def verify_host_key(bastion: Bastion, key: Any, known: dict[str, Any]) -> None:
    """Known and equal: fine. Known and different: refuse. Unknown: refuse with the
    fingerprint, unless --accept-new-host-key, which records it."""
    name = bastion.known_name
    fingerprint = f"{key.get_name()} {key.fingerprint}"
    if known:
        if key.get_name() in known and known[key.get_name()] == key:
            return
        raise AuthError(
            f"the host key of bastion {name} has CHANGED: it offered {fingerprint}, not the "
            f"key in {bastion.known_hosts}",
            f"if the bastion was rebuilt run `ssh-keygen -R '{name}' -f {bastion.known_hosts}` "
            "and rerun with --accept-new-host-key; otherwise do not connect",
        )
    if not bastion.accept_new:
        raise AuthError(
            f"bastion {name} is not in {bastion.known_hosts}; its host key is {fingerprint}",
            "compare the fingerprint with the bastion's (ssh-keygen -lf "
            "/etc/ssh/ssh_host_*_key.pub there), then rerun with --accept-new-host-key",
        )
    path = bastion.known_hosts
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(f"{name} {key.get_name()} {key.get_base64()}\n")
    output.info(f"added the host key of bastion {name} ({fingerprint}) to {path}")


def _login(transport: Any, bastion: Bastion, keys: list[Any]) -> None:
    import paramiko

    tried = []
    for key in keys:
        try:
            transport.auth_publickey(bastion.user, key)
        except paramiko.BadAuthenticationType as exc:
            raise ssh_errors.auth_refused(
                bastion.where, f"it allows only {', '.join(exc.allowed_types)}"
            ) from None
        except paramiko.AuthenticationException:
            tried.append(key.get_name())
            continue
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ssh_errors.unreachable(bastion.where, f"dropped during login: {exc}") from None
        if transport.is_authenticated():
            return
    raise ssh_errors.auth_refused(bastion.where, f"tried {len(tried)} key(s): publickey denied")


def probe_forward(transport: Any, bastion: Bastion, dest: tuple[str, int]) -> None:
    """Open (and close) one forward to `dest`: finds AllowTcpForwarding no and a cache the
    bastion cannot reach before the user's command does."""
    import paramiko

    where = f"{dest[0]}:{dest[1]}"
    try:
        channel = transport.open_channel(
            "direct-tcpip", dest, ("127.0.0.1", 0), timeout=bastion.timeout
        )
    except paramiko.ChannelException as exc:
        if exc.code == 1:
            raise ssh_errors.forward_refused(where, bastion.where) from None
        reason = exc.text or "connect failed"
        raise ssh_errors.forward_failed(where, bastion.where, reason) from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise ConnectError(
            f"bastion {bastion.where} did not open {where}: {exc or 'timed out'}",
            ssh_errors.REACH_HINT,
        ) from None
    channel.close()
