"""ElastiCache IAM authentication: a SigV4-presigned `connect` request used as the password.

The token is valid for 15 minutes; the user name is the ElastiCache user id.
"""

from __future__ import annotations

from urllib.parse import urlencode

from closeup_ops.endpoint import parse
from closeup_ops.errors import AuthError, UsageError
from closeup_ops.settings import Settings

TOKEN_TTL_SECONDS = 900


def iam_token(settings: Settings) -> str:
    import botocore.session
    from botocore.model import ServiceId
    from botocore.signers import RequestSigner

    endpoint = parse(settings.host)
    cache = settings.cache or endpoint.name_hint
    if not cache:
        raise UsageError(
            "REDIS_IAM_AUTH=true needs the cache name", "set ELASTICACHE_CACHE or pass --cache"
        )
    session = botocore.session.Session(profile=settings.profile)
    region = settings.region or session.get_config_variable("region") or endpoint.region
    if not region:
        raise UsageError("no AWS region for the IAM token", "set AWS_REGION or pass --region")
    credentials = session.get_credentials()
    if credentials is None:
        raise AuthError(
            "no AWS credentials to sign the IAM auth token",
            "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        )
    query = {"Action": "connect", "User": settings.username}
    if endpoint.serverless:
        query["ResourceType"] = "ServerlessCache"
    signer = RequestSigner(
        ServiceId("elasticache"),
        region,
        "elasticache",
        "v4",
        credentials,
        session.get_component("event_emitter"),
    )
    request = {
        "method": "GET",
        "url": f"https://{cache}/?{urlencode(query)}",
        "body": {},
        "headers": {},
        "context": {},
    }
    signed = signer.generate_presigned_url(
        request, operation_name="connect", expires_in=TOKEN_TTL_SECONDS, region_name=region
    )
    return signed.removeprefix("https://")
