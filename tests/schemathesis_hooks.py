"""Schemathesis hooks for Recur's API test (loaded through SCHEMATHESIS_HOOKS).

`POST /v1/events` takes NDJSON (`application/x-ndjson`), a media type schemathesis has no
serializer for: generated strings are sent as they are, generated objects or lists of
objects as one JSON line each.
"""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return {"data": value}
    if isinstance(value, str):
        return {"data": value.encode("utf-8")}
    items = value if isinstance(value, list) else [value]
    return {"data": "\n".join(json.dumps(item) for item in items).encode("utf-8")}
