"""Exception types with their exit codes (errors/types.py), and the one handler that turns any
failure into one line on stderr and an exit code (SPEC: Exit codes). The library-specific
mappers live beside it (errors/redis.py, aws.py, ssh.py) and import only errors/types.py."""

from __future__ import annotations

import sys
import traceback

from closeup_ops.errors.types import (  # noqa: F401 (the package's public names)
    CONTEXT,
    EXIT_AUTH,
    EXIT_AWS,
    EXIT_CHECK,
    EXIT_CONNECT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    AuthError,
    AwsResourceError,
    CheckFailed,
    ConnectError,
    Interrupted,
    OpsError,
    UsageError,
    register_secret,
    scrub,
    setting_error,
)


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
    if isinstance(exc, OSError) and exc.filename is not None:
        # A local file (a report to write, a key or CA file to read): the path is the bad
        # input, whatever cache we were talking to.
        return UsageError(
            f"cannot use {exc.filename}: {exc.strerror or exc}",
            "check the path and its permissions",
        )
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
    from closeup_ops.errors.redis import map_redis_error

    return map_redis_error(exc, endpoint)


def _from_aws(exc: BaseException, endpoint: str | None) -> OpsError | None:
    mod = type(exc).__module__
    if not (mod.startswith("botocore") or mod.startswith("boto3")):
        return None
    from closeup_ops.errors.aws import map_aws_error

    return map_aws_error(exc)


def _from_ssh(exc: BaseException, endpoint: str | None) -> OpsError | None:
    mod = type(exc).__module__
    if not (mod.startswith("paramiko") or mod.startswith("sshtunnel")):
        return None
    from closeup_ops.errors.ssh import map_ssh_error

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
