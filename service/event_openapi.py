"""The OpenAPI description of ``POST /events/blob``'s request body, by content type.

Why a module of its own: the route's body is read raw (so that it can be size-limited,
parsed once with orjson and judged as a whole), so FastAPI cannot derive its schema;
this module builds it from the pydantic models of :mod:`service.event_schemas`, which
stay the one definition of the wire shapes. Invariant: every media type the route
accepts is documented here, and none other.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import Field, TypeAdapter

from service.event_schemas import CLOUDEVENTS_BATCH, MAX_EVENTS, CloudEvent, EventGridEvent

_EventGridBatch = Annotated[list[EventGridEvent], Field(max_length=MAX_EVENTS)]
_CloudBatch = Annotated[list[CloudEvent], Field(max_length=MAX_EVENTS)]


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    # The route's request body is documented through ``openapi_extra``, which cannot add
    # component schemas, so the (non-recursive) definitions are inlined instead.
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def _schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    schema = adapter.json_schema(by_alias=True)
    inlined: dict[str, Any] = _inline_refs(schema, schema.get("$defs", {}))
    return inlined


#: ``openapi_extra`` for the POST route: the three accepted body shapes by content type.
REQUEST_BODY_OPENAPI: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": _schema(TypeAdapter(_EventGridBatch | CloudEvent)),
            },
            "application/cloudevents+json": {"schema": _schema(TypeAdapter(CloudEvent))},
            CLOUDEVENTS_BATCH: {"schema": _schema(TypeAdapter(_CloudBatch))},
        },
    }
}

_ERROR: Final = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}

#: The shared secret's three places (read from the request directly: FastAPI's parameter
#: injection cost about a tenth of a ten-event request).
TOKEN_PARAMETERS: Final[list[dict[str, Any]]] = [
    {"name": name, "in": where, "required": False, "description": "Shared secret.",
     "schema": {"type": "string"}}
    for name, where in (("x-ingest-token", "header"), ("aeg-sas-key", "header"), ("token", "query"))
]  # fmt: skip

#: ``openapi_extra`` for the OPTIONS route: the CloudEvents webhook validation handshake.
HANDSHAKE_OPENAPI: Final[dict[str, Any]] = {
    "parameters": [
        {
            "name": "WebHook-Request-Origin",
            "in": "header",
            "required": True,
            "description": "Who asks to deliver events (echoed in WebHook-Allowed-Origin).",
            "schema": {"type": "string", "minLength": 1, "pattern": "\\S"},
        }
    ],
    "responses": {
        "200": {
            "description": "Delivery allowed; empty body.",
            "headers": {
                "WebHook-Allowed-Origin": {"schema": {"type": "string"}},
                "WebHook-Allowed-Rate": {"schema": {"type": "string"}},
            },
        },
        "400": {
            "description": "WebHook-Request-Origin missing or blank",
            "content": {"application/json": {"schema": _ERROR}},
        },
    },
}
