"""Exception types with their exit codes, and the secret scrubber every message goes through.
Imports nothing from closeup_ops, so every layer (and the mappers beside it) can use it."""

from __future__ import annotations

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
