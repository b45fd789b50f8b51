"""boto3 clients for the AWS commands: profile, region (flag > AWS chain > endpoint name),
endpoint (AWS_ENDPOINT_URL, honoured by botocore itself) and standard retry mode, so that
throttling is retried before it is reported."""

from __future__ import annotations

from typing import Any

from closeup_ops import errors
from closeup_ops.connect.endpoint import region_of
from closeup_ops.errors import UsageError
from closeup_ops.settings import Settings


def aws_session(settings: Settings) -> Any:
    import boto3

    try:
        return boto3.session.Session(profile_name=settings.profile)
    except Exception as exc:  # ProfileNotFound
        raise errors.classify(exc) from None


def resolve_region(settings: Settings, session: Any | None = None) -> str:
    session = session or aws_session(settings)
    region = settings.region or session.region_name or region_of(settings.host)
    if not region:
        raise UsageError(
            "no AWS region", "set AWS_REGION, pass --region, or set REDIS_HOST to the "
            "cache endpoint (its name carries the region)",
        )
    return region


def aws_client(settings: Settings, service: str, session: Any | None = None) -> Any:
    from botocore.config import Config

    session = session or aws_session(settings)
    region = resolve_region(settings, session)
    errors.CONTEXT.update(aws_region=region)
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=settings.timeout,
        read_timeout=max(settings.timeout, 30),
    )
    return session.client(service, region_name=region, config=config)
