"""Values, keys and headers on the wire: text travels as a JSON string, ``bytes`` as base64
in the ``*_b64`` field, so that any bytes round-trip exactly."""

import base64


def put(request, name, value):
    """Sets ``name`` (str or None) or ``name_b64`` (bytes) in a request."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        request[name + "_b64"] = base64.b64encode(bytes(value)).decode("ascii")
    elif value is None or isinstance(value, str):
        request[name] = value
    else:
        raise TypeError(f"{name} must be str, bytes or None, not {type(value).__name__}")


def put_headers(request, headers):
    if not headers:
        return
    items = headers.items() if hasattr(headers, "items") else headers
    text, binary = {}, {}
    for name, value in items:
        if isinstance(value, (bytes, bytearray, memoryview)):
            binary[name] = base64.b64encode(bytes(value)).decode("ascii")
        elif value is None or isinstance(value, str):
            text[name] = value
        else:
            raise TypeError(f"header {name!r} must be str, bytes or None")
    if text:
        request["headers"] = text
    if binary:
        request["headers_b64"] = binary


def message(raw):
    """A message from a consume response: ``value``/``key`` as str when the broker sent text,
    as bytes when it sent base64; headers merged into one dict likewise."""
    msg = dict(raw)
    for name in ("value", "key"):
        b64 = msg.pop(name + "_b64", None)
        if b64 is not None:
            msg[name] = base64.b64decode(b64)
        else:
            msg.setdefault(name, None)
    headers = dict(msg.get("headers") or {})
    for name, b64 in (msg.pop("headers_b64", None) or {}).items():
        headers[name] = None if b64 is None else base64.b64decode(b64)
    msg["headers"] = headers
    return msg
