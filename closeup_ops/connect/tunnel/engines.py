"""The two ways bytes cross the bastion, behind one small interface (start, alive, stop,
pin, exit_reason, close, set_forwards, dialer).

- OpenSshForwards: an OpenSSH `ssh -N [-L ...]` master, pinned to the host key that
  connect/tunnel/bastion.py verified. The default: as fast as `ssh -L` because it is `ssh -L`.
  Its control socket, in a directory only this user can enter, gives the proxy its dialer
  (a stdio forward per connection, connect/tunnel/dial.py: the host NAME is sent, the
  bastion resolves it) and lets -L forwards change without a restart. No SOCKS port: one
  on loopback would let any local user reach the VPC through the bastion as us.
- ParamikoForwards: a pure-Python forwarder on a tuned paramiko transport (64 MiB window,
  256 KiB packets, aes128-gcm, TCP_NODELAY), for machines without the `ssh` client. Its
  listening sockets survive a reconnect, so the local ports never change; its dialer opens
  a direct-tcpip channel per connection.

benchmarks/RESULTS.md ("tunnel") has the numbers behind the choice; sshtunnel itself is
not used: with its defaults it moved a 1 MB GET at a third of ssh's speed or less.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from closeup_ops.connect.tunnel.bastion import Bastion
from closeup_ops.connect.tunnel.dial import Dial, channel_dialer, mux_dialer, pump
from closeup_ops.connect.tunnel.nodes import LOCAL, Forward
from closeup_ops.errors import AuthError, ConnectError
from closeup_ops.errors import ssh as ssh_errors

ALIAS = "closeup-ops-bastion"
ENGINE_ENV = "CLOSEUP_OPS_TUNNEL_ENGINE"


def port_free(port: int, host: str = LOCAL) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class OpenSshForwards:
    """One `ssh -N -D ... -L ...` child holding every forward, pinned to a verified key."""

    name = "openssh"

    def __init__(
        self, bastion: Bastion, host_key: Any, forwards: list[Forward], dynamic: bool = False
    ):
        self.bastion = bastion
        self.forwards = list(forwards)
        self.dynamic = dynamic  # offers a dialer (the control socket does it either way)
        self.proc: subprocess.Popen | None = None
        self.stderr: deque[str] = deque(maxlen=30)
        self._dir = Path(tempfile.mkdtemp(prefix="closeup-ops-ssh-"))
        self._control = self._dir / "ctl"
        self.restarts = 0  # times set_forwards had to restart ssh (tests, diagnostics)
        self.pin(host_key)

    def pin(self, host_key: Any) -> None:
        known = self._dir / "known_hosts"
        known.write_text(f"{ALIAS} {host_key.get_name()} {host_key.get_base64()}\n")
        known.chmod(0o600)

    def command(self) -> list[str]:
        binary = shutil.which("ssh")
        if not binary:
            raise ConnectError(
                "the OpenSSH client (ssh) is not installed",
                "install it (apt-get install openssh-client / brew install openssh)",
            )
        b = self.bastion
        options = {
            "BatchMode": "yes",  # never prompt
            "ExitOnForwardFailure": "yes",
            "StrictHostKeyChecking": "yes",  # only the key paramiko verified, pinned below
            "HostKeyAlias": ALIAS,
            "UserKnownHostsFile": str(self._dir / "known_hosts"),
            "GlobalKnownHostsFile": "/dev/null",
            "UpdateHostKeys": "no",
            "ConnectTimeout": str(int(b.timeout)),
            "ServerAliveInterval": "5",  # a dead session is noticed in ~15 s
            "ServerAliveCountMax": "3",
            "LogLevel": "ERROR",
            # a control socket: -L forwards are added and cancelled on the running session
            # (`ssh -O forward|cancel`), with no restart (set_forwards)
            "ControlMaster": "yes",
            "ControlPath": str(self._control),
        }
        cmd = [binary, "-N", "-T", "-F", "/dev/null", "-p", str(b.port), "-l", b.user]
        for name, value in options.items():
            cmd += ["-o", f"{name}={value}"]
        if b.key:
            cmd += ["-i", b.key, "-o", "IdentitiesOnly=yes"]
        for fwd in self.forwards:
            cmd += ["-L", fwd.ssh_spec()]
        return cmd + [b.host]

    def dialer(self) -> Dial:
        """Through the control socket; its path stays the same across restarts, so one
        dialer serves them all."""
        return mux_dialer(self._control, self.bastion.timeout)

    def set_forwards(self, forwards: list[Forward]) -> None:
        """Change the -L forwards: on the running session through its control socket (a
        new forward listens at once, the connections through the control socket stay), else
        by restarting ssh (the same control socket path)."""
        forwards = list(forwards)
        if forwards == self.forwards:
            return
        if self.alive() and self._control_forwards(forwards):
            return
        running = self.alive()
        self.stop()
        self.forwards = forwards
        if running:
            self.restarts += 1
            self.start()

    def _control_forwards(self, forwards: list[Forward]) -> bool:
        """Cancel and add -L forwards with `ssh -O` on the master's control socket. False
        when that is not possible (no socket, an ssh without multiplexing, a refused
        forward): the caller restarts ssh, which reports a real failure as usual."""
        binary = shutil.which("ssh")
        if not binary or not self._control.exists():
            return False
        gone = [f for f in self.forwards if f not in forwards]
        new = [f for f in forwards if f not in self.forwards]
        base = [binary, "-F", "/dev/null", "-o", f"ControlPath={self._control}"]
        for op, fwd in [("cancel", f) for f in gone] + [("forward", f) for f in new]:
            try:
                done = subprocess.run(
                    [*base, "-O", op, "-L", fwd.ssh_spec(), self.bastion.host],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=self.bastion.timeout,
                )
            except (OSError, subprocess.TimeoutExpired):
                return False
            if done.returncode != 0:
                return False
            if op == "cancel":
                self.forwards.remove(fwd)
            else:
                self.forwards.append(fwd)
        self.forwards = forwards
        self._wait_listening()
        return True

    def start(self) -> None:
        self.stderr.clear()
        # a master that died (a dropped session) may leave its socket: a new master would
        # then run without one ("already exists, disabling multiplexing")
        self._control.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,  # Ctrl-C reaches us, and we close ssh in order
            preexec_fn=_die_with_parent,
        )
        threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True).start()
        self._wait_listening()

    def _read_stderr(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            self.stderr.append(line.rstrip())

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + self.bastion.timeout + 5
        waiting = [(f.bind, f.local_port) for f in self.forwards]
        while True:
            if not self.alive():
                self.proc.wait()  # type: ignore[union-attr]
                time.sleep(0.05)  # let the reader thread catch the last line
                raise ssh_errors.map_ssh_stderr(
                    "\n".join(self.stderr),
                    self.bastion.where,
                    [f.local_port for f in self.forwards],
                )
            waiting = [(h, p) for h, p in waiting if port_free(p, h)]
            if not waiting and self._control.exists():  # the master: logged in, serving
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ConnectError(
                    f"ssh did not open local port(s) {[p for _, p in waiting]} in time"
                    if waiting
                    else "ssh did not open its control socket in time",
                    ssh_errors.REACH_HINT,
                )
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_reason(self) -> str:
        code = self.proc.poll() if self.proc else None
        last = next((ln for ln in reversed(self.stderr) if ln.strip()), "")
        return f"ssh exited {code}" + (f": {last}" if last else "")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def _die_with_parent() -> None:
    """In the child: get SIGTERM if closeup-ops dies, so no orphan ssh holds the port."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class ParamikoForwards:
    """Forwards on one tuned paramiko transport; a thread per connection pumps the bytes."""

    name = "paramiko"

    def __init__(self, bastion: Bastion, host_key: Any, forwards: list[Forward]):
        self.bastion = bastion
        self.forwards = list(forwards)
        self.host_key = host_key
        self.transport: Any = None
        self.listeners: dict[int, socket.socket] = {}

    def pin(self, host_key: Any) -> None:
        self.host_key = host_key

    def dialer(self) -> Dial:
        return channel_dialer(lambda: self.transport, self.bastion.timeout)

    def set_forwards(self, forwards: list[Forward]) -> None:
        """Change the forwards: listeners no longer wanted close, new ones open now if the
        transport is up (else at the next start)."""
        wanted = {f.local_port for f in forwards}
        for port in [p for p in self.listeners if p not in wanted]:
            _close_listener(self.listeners.pop(port))
        self.forwards = list(forwards)
        if self.transport is not None:
            for fwd in self.forwards:
                if fwd.local_port not in self.listeners:
                    self._listen(fwd)

    def start(self) -> None:
        from closeup_ops.connect.tunnel.bastion import connect

        transport = connect(self.bastion, tuned=True)
        if transport.get_remote_server_key() != self.host_key:
            transport.close()
            raise AuthError(
                f"the host key of bastion {self.bastion.known_name} changed while connecting",
                "rerun; if it persists, check the bastion before trusting it",
            )
        transport.set_keepalive(5)
        self.transport = transport
        for fwd in self.forwards:
            if fwd.local_port not in self.listeners:
                self._listen(fwd)

    def _listen(self, fwd: Forward) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((fwd.bind, fwd.local_port))
        except OSError:
            listener.close()
            raise ConnectError(
                f"local port {fwd.local_port} is already in use",
                "pass another --local-port, or stop what listens there",
            ) from None
        listener.listen(64)
        self.listeners[fwd.local_port] = listener
        threading.Thread(target=self._accept, args=(listener, fwd), daemon=True).start()

    def _accept(self, listener: socket.socket, fwd: Forward) -> None:
        while True:
            try:
                conn, peer = listener.accept()
            except OSError:
                return  # closed
            transport = self.transport
            if transport is None or not transport.is_active():
                conn.close()  # between sessions: fail fast, the client retries later
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                channel = transport.open_channel(
                    "direct-tcpip",
                    (fwd.remote_host, fwd.remote_port),
                    peer,
                    timeout=self.bastion.timeout,
                )
            except Exception:  # noqa: BLE001 - refused or dropped: this connection fails
                conn.close()
                continue
            threading.Thread(target=pump, args=(conn, channel), daemon=True).start()

    def alive(self) -> bool:
        return self.transport is not None and self.transport.is_active()

    def exit_reason(self) -> str:
        return "the SSH transport closed"

    def stop(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.close()

    def close(self) -> None:
        self.stop()
        for listener in self.listeners.values():
            _close_listener(listener)
        self.listeners.clear()


def _close_listener(listener: socket.socket) -> None:
    """shutdown() first: on Linux a bare close() leaves the port listening while another
    thread sits in accept()."""
    try:
        listener.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    listener.close()


def make_engine(
    bastion: Bastion, host_key: Any, forwards: list[Forward], dynamic: bool = False
) -> Any:
    """OpenSSH when `ssh` is installed (or CLOSEUP_OPS_TUNNEL_ENGINE=openssh), else paramiko.
    `dynamic`: the engine must offer a dialer (OpenSSH then runs a -D forward too)."""
    choice = os.environ.get(ENGINE_ENV, "").strip().lower()
    if choice not in ("", "openssh", "paramiko"):
        from closeup_ops.errors import UsageError

        raise UsageError(f"{ENGINE_ENV}={choice} is not valid", "use openssh or paramiko")
    if choice == "paramiko" or (not choice and not shutil.which("ssh")):
        return ParamikoForwards(bastion, host_key, forwards)
    return OpenSshForwards(bastion, host_key, forwards, dynamic=dynamic)
