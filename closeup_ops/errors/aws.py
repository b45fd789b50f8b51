"""botocore exceptions -> one actionable line with SPEC's exit code."""

from __future__ import annotations

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
    if code in USAGE_CODES:
        return UsageError(text, "check the values passed")
    if code.startswith("Throttl") or code in ("RequestLimitExceeded", "TooManyRequests"):
        return AwsResourceError(text, "AWS kept throttling after retries: wait and retry")
    return AwsResourceError(text, _resource_hint(code))


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
