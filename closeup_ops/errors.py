"""Exception types with their exit codes, and the one handler that turns any failure into
one line on stderr and an exit code (SPEC: Exit codes)."""

from __future__ import annotations

import sys
import traceback

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_AUTH = 4
EXIT_AWS = 5
EXIT_CHECK = 6
EXIT_INTERRUPTED = 130

# Secret values seen by the settings loader; every message is scrubbed of them before it
# is printed, as a last line of defence behind "never put a secret in a message".
_SECRETS: set[str] = set()

# What the current command is talking to (set by the connection factories), so that an
# error raised deep inside a client library can still name the endpoint and the timeout.
CONTEXT: dict[str, object] = {}


def register_secret(value: str | None) -> None:
    if value and len(value) >= 3:
        _SECRETS.add(value)


def scrub(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "******")
    return text


class OpsError(Exception):
    """A failure the user can act on: `message` says what failed, `hint` what to do next."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def line(self) -> str:
        return f"{self.message}: {self.hint}" if self.hint else self.message


class UsageError(OpsError):
    exit_code = EXIT_USAGE


class ConnectError(OpsError):
    exit_code = EXIT_CONNECT


class AuthError(OpsError):
    exit_code = EXIT_AUTH


class AwsResourceError(OpsError):
    exit_code = EXIT_AWS


class CheckFailed(OpsError):
    exit_code = EXIT_CHECK


class Interrupted(OpsError):
    exit_code = EXIT_INTERRUPTED


def setting_error(variable: str, value: object, allowed: str) -> UsageError:
    shown = f"{variable} {value!s}" if variable.startswith("-") else f"{variable}={value!s}"
    return UsageError(f"{shown} is not valid", f"use {allowed}")


def classify(exc: BaseException, endpoint: str | None = None) -> OpsError:
    """Map any exception to an OpsError with its exit code; never raises."""
    if isinstance(exc, OpsError):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted("interrupted")
    endpoint = endpoint or CONTEXT.get("endpoint")  # type: ignore[assignment]
    for mapper in (_from_click, _from_redis, _from_aws, _from_ssh):
        mapped = mapper(exc, endpoint)
        if mapped is not None:
            return mapped
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)) and endpoint:
        return ConnectError(f"cannot reach {endpoint}: {exc}", "check the host, port and network")
    return OpsError(
        f"internal error: {type(exc).__name__}: {exc}", "rerun with --verbose and report it"
    )


def _from_click(exc: BaseException, endpoint: str | None) -> OpsError | None:
    # Duck-typed: typer has shipped click both vendored and as a dependency.
    name = type(exc).__name__
    if name == "Abort":
        return Interrupted("interrupted")
    if hasattr(exc, "format_message") and getattr(exc, "exit_code", None) == 2:
        ctx = getattr(exc, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        return UsageError(exc.format_message().replace("\n", " ") + where)
    if hasattr(exc, "format_message"):
        return UsageError(exc.format_message().replace("\n", " "))
    return None


def _from_redis(exc: BaseException, endpoint: str | None) -> OpsError | None:
    mod = type(exc).__module__
    if not mod.startswith("redis"):
        return None
    from closeup_ops.connect.redis_errors import map_redis_error

    return map_redis_error(exc, endpoint)


def _from_aws(exc: BaseException, endpoint: str | None) -> OpsError | None:
    mod = type(exc).__module__
    if not (mod.startswith("botocore") or mod.startswith("boto3")):
        return None
    from closeup_ops.connect.aws_errors import map_aws_error

    return map_aws_error(exc)


def _from_ssh(exc: BaseException, endpoint: str | None) -> OpsError | None:
    mod = type(exc).__module__
    if not (mod.startswith("paramiko") or mod.startswith("sshtunnel")):
        return None
    try:
        from closeup_ops.connect.ssh_errors import map_ssh_error
    except ImportError:
        return ConnectError(
            f"SSH failed: {exc}", "check BASTION_HOST, BASTION_USER and BASTION_KEY"
        )
    return map_ssh_error(exc)


def report(exc: BaseException, verbose: bool = False, endpoint: str | None = None) -> int:
    """The one handler: print one line on stderr (traceback only when verbose)."""
    err = classify(exc, endpoint)
    if verbose and not isinstance(exc, (OpsError, KeyboardInterrupt)):
        sys.stderr.write(scrub("".join(traceback.format_exception(exc))))
    line = scrub(err.line()).replace("\n", " ").strip()
    sys.stderr.write(f"closeup-ops: error: {line}\n")
    sys.stderr.flush()
    return err.exit_code
