"""Hugging Face Hub reachability: one quick check before anything that would retry for half a minute.

``huggingface_hub`` retries a refused connection five times with back-off (~30 s) and logs each retry;
behind a dead proxy or without network, users wait and then read a traceback. :func:`hub_status` asks once,
with a short timeout, whether the hub answers, so callers can fail in one line or fall back to the cache.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

__all__ = ["hub_offline", "hub_endpoint", "hub_status"]

_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set: never touch the network."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_endpoint() -> str:
    """The hub URL in use (``HF_ENDPOINT`` or https://huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_status(timeout: float | None = None) -> str | None:
    """``None`` if the hub answers an HTTP request within ``timeout`` seconds (default
    ``POSEVLM_HUB_TIMEOUT`` or 5), else why not (one line: the endpoint, the proxy in use, the error).
    Any HTTP status counts as reachable; proxies come from the usual environment variables."""
    timeout = float(os.environ.get("POSEVLM_HUB_TIMEOUT", "5")) if timeout is None else timeout
    url = hub_endpoint() + "/api/models?limit=1"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        proxies = {k: v for k, v in urllib.request.getproxies().items() if k in ("http", "https")}
        via = f" via proxy {proxies.get('https') or proxies.get('http')}" if proxies else ""
        return f"cannot reach {hub_endpoint()}{via} within {timeout:g}s ({reason})"
