"""The one settings loader: command-line flag > environment > .env file > default.

Empty values count as unset. Every bad value exits 2 with one line that names the variable
and what is allowed. The password is kept in a `Secret` whose repr never shows it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from closeup_ops.endpoint import NotAHost, bare_host
from closeup_ops.errors import UsageError, register_secret, setting_error

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


class Secret:
    """A secret string: shown as ****** everywhere except through `.reveal()`."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('******')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    host: str = "localhost"
    port: int = 6379
    password: Secret | None = field(default=None, repr=False)
    username: str | None = None
    db: int = 0
    tls: bool | None = None  # None: auto (on for serverless endpoints)
    ca_cert: str | None = None
    tls_server_name: str | None = None
    insecure: bool = False
    timeout: float = 5.0
    cluster: bool | None = None  # None: ask the server
    iam_auth: bool = False
    cache: str | None = None
    bastion_host: str | None = None
    bastion_port: int = 22
    bastion_user: str = "ec2-user"
    bastion_key: str | None = None
    bastion_known_hosts: str | None = None  # None: ~/.ssh/known_hosts
    profile: str | None = None
    region: str | None = None
    via_bastion: bool = False
    rate: int | None = None  # keys/ttl: commands per second per node (--rate, REDIS_RATE)
    # REDIS_RESOLVE, like curl's --resolve: ((name, port, address), ...)
    resolve: tuple[tuple[str, int, str], ...] = ()

    @property
    def serverless(self) -> bool:
        from closeup_ops.endpoint import is_serverless

        return is_serverless(self.host)

    @property
    def use_tls(self) -> bool:
        return self.tls if self.tls is not None else self.serverless

    @property
    def server_name(self) -> str:
        return self.tls_server_name or self.host

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def dial(self, host: str, port: int) -> tuple[str, int]:
        """Where to connect for host:port: REDIS_RESOLVE's address for that name and port,
        else the name itself (TLS still checks, and sends as SNI, the name)."""
        wanted = host.strip().lower().rstrip(".")
        for name, mapped_port, address in self.resolve:
            if name == wanted and mapped_port == port:
                return address, port
        return host, port

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def public(self) -> dict[str, Any]:
        """The settings as a JSON-safe dict, password masked."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["password"] = "******" if self.password else None
        return out


# field name -> environment variable
ENV_NAMES: dict[str, str] = {
    "host": "REDIS_HOST",
    "port": "REDIS_PORT",
    "password": "REDIS_PASSWORD",
    "username": "REDIS_USERNAME",
    "db": "REDIS_DB",
    "tls": "REDIS_TLS",
    "ca_cert": "REDIS_CA_CERT",
    "tls_server_name": "REDIS_TLS_SERVER_NAME",
    "timeout": "REDIS_TIMEOUT",
    "cluster": "REDIS_CLUSTER",
    "iam_auth": "REDIS_IAM_AUTH",
    "cache": "ELASTICACHE_CACHE",
    "bastion_host": "BASTION_HOST",
    "bastion_port": "BASTION_PORT",
    "bastion_user": "BASTION_USER",
    "bastion_key": "BASTION_KEY",
    "bastion_known_hosts": "BASTION_KNOWN_HOSTS",
    "resolve": "REDIS_RESOLVE",
    "rate": "REDIS_RATE",
}

# field name -> flag, for messages about a value that came from the command line
FLAG_NAMES: dict[str, str] = {
    "host": "--host",
    "port": "--port",
    "username": "--username",
    "db": "--db",
    "ca_cert": "--ca-cert",
    "tls_server_name": "--tls-server-name",
    "timeout": "--timeout",
    "cache": "--cache",
    "bastion_host": "--bastion",
    "bastion_port": "--bastion-port",
    "bastion_user": "--bastion-user",
    "bastion_key": "--bastion-key",
    "profile": "--profile",
    "region": "--region",
    "resolve": "--resolve",
    "rate": "--rate",
}


def parse_env_file(path: Path) -> dict[str, str]:
    """A strict .env reader: KEY=VALUE lines, optional `export`, quotes and # comments.

    Strict on purpose: python-dotenv skips a malformed line with a warning, and a silently
    ignored REDIS_HOST line points a 3 a.m. command at the wrong server.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(
            f"cannot read env file {path}: {exc.strerror or exc}",
            "pass an existing file with --env-file",
        ) from None
    except UnicodeDecodeError:
        raise UsageError(f"env file {path} is not UTF-8 text", "fix the file") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or not (key.replace("_", "a").isalnum() and not key[0].isdigit()):
            raise UsageError(
                f"{path} line {number} is not KEY=VALUE",
                "fix or remove that line (comments start with #)",
            )
        values[key] = _unquote(value.strip(), path, number)
    return values


def _unquote(value: str, path: Path, number: int) -> str:
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.find(quote, 1)
        if end == -1:
            raise UsageError(
                f"{path} line {number} has an unclosed {quote} quote", "close the quote"
            )
        rest = value[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise UsageError(
                f"{path} line {number} has text after the closing quote",
                "put a # before a comment",
            )
        return value[1:end]
    comment = value.find(" #")
    return value[:comment].rstrip() if comment != -1 else value


def load(
    flags: Mapping[str, Any] | None = None,
    env_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    password: str | None = None,
) -> Settings:
    """Build Settings from flags (None = not given), the environment and the .env file.

    `password` is the prompt's answer (`--ask-password`), which beats every other source.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = os.environ if environ is None else environ
    if env_file is not None:
        dotenv = parse_env_file(Path(env_file))
    elif Path(".env").is_file():
        dotenv = parse_env_file(Path(".env"))
    else:
        dotenv = {}

    def raw(name: str) -> tuple[Any, str] | None:
        if name in flags and flags[name] != "":
            return flags[name], FLAG_NAMES.get(name, name)
        var = ENV_NAMES.get(name)
        if var is None:
            return None
        for source in (environ, dotenv):
            value = source.get(var)
            if value is not None and value.strip() != "":
                return value.strip(), var
        return None

    values: dict[str, Any] = {}
    for name, convert in _CONVERTERS.items():
        found = raw(name)
        if found is not None:
            values[name] = convert(found[0], found[1])
    for name in ("insecure", "via_bastion", "profile", "region"):
        if name in flags:
            values[name] = flags[name]
    secret = password if password else (raw("password") or (None, None))[0]
    if secret:
        values["password"] = Secret(str(secret))
    settings = Settings(**values)
    _check_combinations(settings)
    return settings


def _text(value: Any, name: str) -> str:
    text = str(value).strip()
    if any(ch.isspace() for ch in text):
        raise setting_error(name, text, "a value without spaces")
    return text


def _host(value: Any, name: str) -> str:
    """A host name or address, alone (endpoint.bare_host); a URL or user@host is not echoed,
    as it may hold a password."""
    text = _text(value, name)
    try:
        return bare_host(text)
    except NotAHost as exc:
        if exc.may_hold_secret:
            raise UsageError(
                f"{name} holds a URL or user@host, not a host name", exc.allowed
            ) from None
        raise setting_error(name, text, exc.allowed) from None


def _int_range(low: int, high: int, what: str):
    def convert(value: Any, name: str) -> int:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise setting_error(name, value, f"{what} from {low} to {high}") from None
        if not low <= number <= high:
            raise setting_error(name, value, f"{what} from {low} to {high}")
        return number

    return convert


def _timeout(value: Any, name: str) -> float:
    try:
        seconds = float(str(value).strip())
    except ValueError:
        raise setting_error(name, value, "a number of seconds above 0 (e.g. 5 or 0.5)") from None
    if not 0 < seconds <= 3600 or seconds != seconds:
        raise setting_error(name, value, "a number of seconds above 0 and at most 3600")
    return seconds


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise setting_error(name, value, "true or false")


def _tristate(value: Any, name: str) -> bool | None:
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() == "auto":
        return None
    try:
        return _bool(value, name)
    except UsageError:
        raise setting_error(name, value, "true, false or auto") from None


def _readable_file(value: Any, name: str) -> str:
    path = Path(str(value)).expanduser()
    if not path.is_file() or not os.access(path, os.R_OK):
        raise UsageError(
            f"{name}={value} is not a readable file",
            "point it at a PEM CA bundle (e.g. the AWS root CA) or unset it for the system store",
        )
    return str(path)


RESOLVE_FORMAT = "NAME:PORT:ADDRESS[,NAME:PORT:ADDRESS...] with an IP ADDRESS"


def _resolve(value: Any, name: str) -> tuple[tuple[str, int, str], ...]:
    """curl's --resolve: NAME:PORT:ADDRESS, comma-separated; an IPv6 ADDRESS in []."""
    import ipaddress

    out = []
    for entry in str(value).split(","):
        host, _, rest = entry.strip().partition(":")
        port_text, _, address = rest.partition(":")
        address = address.strip().removeprefix("[").removesuffix("]")
        try:
            ipaddress.ip_address(address)
            port = int(port_text)
        except ValueError:
            raise setting_error(name, value, RESOLVE_FORMAT) from None
        if not host or any(c.isspace() for c in host) or not 1 <= port <= 65535:
            raise setting_error(name, value, RESOLVE_FORMAT)
        out.append((host.lower().rstrip("."), port, address))
    return tuple(out)


def _path(value: Any, name: str) -> str:
    return str(Path(str(value)).expanduser())


def _key_file(value: Any, name: str) -> str:
    """BASTION_KEY: a file that is not there is a bad setting (exit 2), like REDIS_CA_CERT;
    its mode and format are checked when the tunnel loads it."""
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise UsageError(
            f"{name}={value} is not a file",
            "point BASTION_KEY (or --bastion-key) at the private key file, e.g. "
            "~/.ssh/bastion.pem, or unset it to use the SSH agent",
        )
    return str(path)


_CONVERTERS = {
    "host": _host,
    "port": _int_range(1, 65535, "a port number"),
    "username": _text,
    "db": _int_range(0, 1_000_000, "a database number"),
    "tls": _tristate,
    "ca_cert": _readable_file,
    "tls_server_name": _text,
    "timeout": _timeout,
    "cluster": _tristate,
    "iam_auth": _bool,
    "cache": _text,
    "bastion_host": _text,
    "bastion_port": _int_range(1, 65535, "a port number"),
    "bastion_user": _text,
    "bastion_key": _key_file,
    "bastion_known_hosts": _text,
    "resolve": _resolve,
    "rate": _int_range(1, 1_000_000, "commands per second"),
}


def _check_combinations(settings: Settings) -> None:
    if settings.iam_auth and not settings.username:
        raise UsageError(
            "REDIS_IAM_AUTH=true needs REDIS_USERNAME",
            "set REDIS_USERNAME to the ElastiCache user id the IAM policy names",
        )
    if settings.iam_auth and settings.tls is False:
        raise UsageError("REDIS_IAM_AUTH=true needs TLS", "unset REDIS_TLS or set REDIS_TLS=true")
    if settings.serverless and settings.tls is False:
        raise UsageError(
            f"{settings.host} is a serverless endpoint, which only speaks TLS",
            "unset REDIS_TLS or set REDIS_TLS=true",
        )
