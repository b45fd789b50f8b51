"""The AWS query protocol for the sandbox's serverless front, through botocore's own
service model: form fields in (`SecurityGroupIds.SecurityGroupId.1=...`), XML out (member
names, list member names, timestamps as the model says), faults as ErrorResponse."""

from __future__ import annotations

import uuid
from typing import Any
from xml.sax.saxutils import escape

NAMESPACE = "http://elasticache.amazonaws.com/doc/2015-02-02/"


class Fault(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


_MODEL: list[Any] = []


def service_model() -> Any:
    if not _MODEL:
        import botocore.session

        _MODEL.append(botocore.session.get_session().get_service_model("elasticache"))
    return _MODEL[0]


def parse_params(action: str, form: dict[str, list[str]]) -> dict[str, Any]:
    """Query-protocol form fields (`SecurityGroupIds.SecurityGroupId.1=...`) -> dict."""
    shape = service_model().operation_model(action).input_shape
    flat = {k: v[-1] for k, v in form.items()}
    return _read(shape, "", flat)


def _read(shape: Any, prefix: str, flat: dict[str, str]) -> Any:
    kind = shape.type_name
    if kind == "structure":
        out = {}
        for name, member in shape.members.items():
            tag = member.serialization.get("name", name)
            key = f"{prefix}.{tag}" if prefix else tag
            value = _read(member, key, flat)
            if value is not None:
                out[name] = value
        return out if out or not prefix else None
    if kind == "list":
        element = shape.member.serialization.get("name", "member")
        items, i = [], 1
        while any(k.startswith(f"{prefix}.{element}.{i}") for k in flat):
            items.append(_read(shape.member, f"{prefix}.{element}.{i}", flat))
            i += 1
        return items or None
    raw = flat.get(prefix)
    if raw is None:
        return None
    if kind in ("integer", "long"):
        return int(raw)
    if kind == "boolean":
        return raw.lower() == "true"
    return raw


def to_xml(shape: Any, value: Any) -> str:
    """A value as the query protocol's XML for `shape` (members in model order)."""
    kind = shape.type_name
    if kind == "structure":
        parts = []
        for name, member in shape.members.items():
            if name in value and value[name] is not None:
                tag = member.serialization.get("name", name)
                parts.append(f"<{tag}>{to_xml(member, value[name])}</{tag}>")
        return "".join(parts)
    if kind == "list":
        tag = shape.member.serialization.get("name", "member")
        return "".join(f"<{tag}>{to_xml(shape.member, item)}</{tag}>" for item in value)
    if kind == "timestamp":
        return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if kind == "boolean":
        return "true" if value else "false"
    return escape(str(value))


def response_xml(action: str, result: dict[str, Any]) -> str:
    op = service_model().operation_model(action)
    body = to_xml(op.output_shape, result)
    wrapper = op.output_shape.serialization["resultWrapper"]
    return (
        f'<{action}Response xmlns="{NAMESPACE}"><{wrapper}>{body}</{wrapper}>'
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )


def error_xml(fault: Fault) -> str:
    kind = "Sender" if fault.status < 500 else "Receiver"
    return (
        f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{kind}</Type>'
        f"<Code>{escape(fault.code)}</Code><Message>{escape(fault.message)}</Message>"
        f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
