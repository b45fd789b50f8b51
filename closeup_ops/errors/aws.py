"""botocore exceptions -> one actionable line with SPEC's exit code."""

from __future__ import annotations

import json

from closeup_ops.errors import types as errors
from closeup_ops.errors.types import AuthError, AwsResourceError, ConnectError, OpsError, UsageError

AUTH_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthFailure",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
}
USAGE_CODES = {
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "ValidationError",
    "InvalidParameterValueException",
    "MissingParameter",
}


def map_aws_error(exc: BaseException) -> OpsError:
    name = type(exc).__name__
    region = errors.CONTEXT.get("aws_region", "?")
    if name in ("NoCredentialsError", "PartialCredentialsError", "NoAuthTokenError"):
        return AuthError(
            "no AWS credentials found",
            "set AWS_PROFILE (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or run on an "
            "instance with a role",
        )
    if name == "ProfileNotFound":
        return UsageError(str(exc), "check AWS_PROFILE / --profile against ~/.aws/config")
    if name in (
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
    ):
        return ConnectError(
            f"cannot reach the AWS API in {region}: {exc}",
            "check network access to AWS (or AWS_ENDPOINT_URL)",
        )
    if name == "ResponseParserError":
        # An HTML error page or a proxy's answer instead of the AWS API (its text is long)
        return ConnectError(
            f"the AWS endpoint for {region} did not answer like the AWS API",
            "check --region / AWS_REGION, AWS_ENDPOINT_URL and any HTTP proxy",
        )
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return OpsError(f"AWS error: {exc}", "rerun with --verbose")
    error = response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    message = str(error.get("Message", "")).split("\n")[0]
    op = getattr(exc, "operation_name", "AWS call")
    text = f"{op} failed: {code}: {message}" if message else f"{op} failed: {code}"
    if code in AUTH_CODES or "AccessDenied" in code:
        return AuthError(text, f"grant the IAM permission for {op} to these credentials")
    if code == "DryRunOperation":
        return OpsError(text)
    if code == "InvalidParameterCombination":
        # The tool chose the combination (a restore copies a dozen settings): not the
        # user's values, the tool's fault: exit 1 with what was sent.
        sent = _sent(op)
        return OpsError(
            f"AWS refused the request closeup-ops built: {text}"
            + (f"; request {sent}" if sent else ""),
            "this is a closeup-ops bug: please report this line; a flag that sets the "
            "refused value yourself may work around it",
        )
    if code in USAGE_CODES:
        return UsageError(text, "check the values passed")
    if code.startswith("Throttl") or code in ("RequestLimitExceeded", "TooManyRequests"):
        return AwsResourceError(text, "AWS kept throttling after retries: wait and retry")
    return AwsResourceError(text, _resource_hint(code))


SECRET_PARAMS = ("AuthToken", "Password", "Passwords", "SecretAccessKey", "SessionToken")


def _sent(op: str) -> str | None:
    """The parameters of the last `op` call, secrets masked (errors.types.scrub runs too)."""
    requests = errors.CONTEXT.get("aws_requests")
    params = requests.get(op) if isinstance(requests, dict) else None
    if not isinstance(params, dict):
        return None
    shown = {k: ("******" if k in SECRET_PARAMS else v) for k, v in sorted(params.items())}
    return json.dumps(shown, default=str, separators=(",", ":"))


def _resource_hint(code: str) -> str:
    if code.endswith("NotFound") or code.endswith("NotFoundFault") or "NotFound" in code:
        return "check the name (list them with `closeup-ops caches` / `snapshot list`)"
    if "AlreadyExists" in code or code.endswith("Duplicate"):
        return "pick another name"
    # InvalidCacheClusterState, InvalidReplicationGroupState, InvalidSnapshotState,
    # InvalidServerlessCacheStateFault, InvalidServerlessCacheSnapshotStateFault, ...
    if code.startswith("Invalid") and "State" in code:
        return "wait until the resource is available and retry"
    if "Quota" in code or "LimitExceeded" in code:
        return "delete old snapshots or ask AWS for a higher quota"
    return "see the AWS message"
