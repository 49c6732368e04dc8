"""HTTP for avsr-serve's tests: urllib, with error statuses returned as answers (not raised)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def http(url: str, data: bytes | None = None, method: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a request; HTTP errors are answers too."""
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def http_json(url: str, data: bytes | None = None, method: str | None = None) -> tuple[int, dict]:
    status, _, body = http(url, data, method)
    return status, json.loads(body)
