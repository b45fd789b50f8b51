"""ElastiCache IAM authentication: a SigV4-presigned `connect` request used as the password.

What ElastiCache checks (AWS docs, "Authenticating with IAM"):
- the request is `GET https://<cache>/?Action=connect&User=<user id>` (plus
  `ResourceType=ServerlessCache` for a serverless cache), presigned for service
  `elasticache` in the cache's region, valid for at most 15 minutes; the token is that URL
  without `https://`;
- <cache> is the replication group id (node-based) or the serverless cache name, as AWS
  stores them: lower-case.

The token is checked when a connection authenticates, so a client that opens a connection
after 15 minutes needs a new one: `IamCredentialProvider` signs a fresh token for every new
connection (redis-py asks a `credential_provider` on each connect).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from redis.credentials import CredentialProvider

from closeup_ops.endpoint import parse
from closeup_ops.errors import AuthError, UsageError
from closeup_ops.settings import Settings

TOKEN_TTL_SECONDS = 900


@dataclass(frozen=True)
class IamTarget:
    """What the token names: the cache (resource), its region, serverless or not."""

    resource: str
    region: str
    serverless: bool


def iam_target(settings: Settings, session: Any | None = None) -> IamTarget:
    """The resource and region to sign for. The endpoint is the real name: behind a tunnel
    REDIS_HOST is 127.0.0.1 and REDIS_TLS_SERVER_NAME is the cache's endpoint."""
    from closeup_ops.connect.aws import resolve_region

    endpoint = parse(settings.server_name)
    resource = (settings.cache or endpoint.name_hint or "").strip().lower()
    if not resource:
        raise UsageError(
            "REDIS_IAM_AUTH=true needs the cache name",
            "set ELASTICACHE_CACHE or pass --cache (the replication group id or "
            "serverless cache name), or set REDIS_HOST / REDIS_TLS_SERVER_NAME to its endpoint",
        )
    try:
        region = resolve_region(settings, session)
    except UsageError:
        raise UsageError(
            "no AWS region for the IAM token", "pass --region or set AWS_REGION"
        ) from None
    return IamTarget(resource, region, endpoint.serverless)


class IamCredentialProvider(CredentialProvider):
    """(user, fresh token) on every call: redis-py calls it for each new connection."""

    def __init__(self, settings: Settings):
        import botocore.session

        self.settings = settings
        self.session = botocore.session.Session(profile=settings.profile)
        self.target = iam_target(settings, self.session)
        self._signer: Any = None
        self.issued = 0  # tokens signed so far (one per connection)

    def _request_signer(self) -> Any:
        if self._signer is None:
            from botocore.model import ServiceId
            from botocore.signers import RequestSigner

            credentials = self.session.get_credentials()
            if credentials is None:
                raise AuthError(
                    "no AWS credentials to sign the IAM auth token",
                    "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
                )
            # botocore's credentials refresh themselves (roles, SSO): the signer keeps the
            # object, not a copy of the keys
            self._signer = RequestSigner(
                ServiceId("elasticache"),
                self.target.region,
                "elasticache",
                "v4",
                credentials,
                self.session.get_component("event_emitter"),
            )
        return self._signer

    def token(self) -> str:
        query = {"Action": "connect", "User": self.settings.username}
        if self.target.serverless:
            query["ResourceType"] = "ServerlessCache"
        request = {
            "method": "GET",
            "url": f"https://{self.target.resource}/?{urlencode(query)}",
            "body": {},
            "headers": {},
            "context": {},
        }
        signed = self._request_signer().generate_presigned_url(
            request,
            operation_name="connect",
            expires_in=TOKEN_TTL_SECONDS,
            region_name=self.target.region,
        )
        self.issued += 1
        return signed.removeprefix("https://")

    def get_credentials(self) -> tuple[str, str]:
        return str(self.settings.username), self.token()


def iam_provider(settings: Settings) -> IamCredentialProvider:
    """A provider whose credentials are checked now (exit 4 without any), not at connect."""
    provider = IamCredentialProvider(settings)
    provider._request_signer()
    return provider


def iam_token(settings: Settings) -> str:
    """One token (for a client that is not redis-py, e.g. a printed redis-cli line)."""
    return iam_provider(settings).token()
