"""Verifying an oauth-manager webhook: the snippet docs/api-guide.md shows, as a file a test runs.

    OAUTH_WEBHOOK_SECRET=... python3 verify.py "<OAuth-Manager-Signature header>" < body.json

exits 0 when the signature is valid and fresh, 1 otherwise.
"""

import hashlib
import hmac
import os
import sys
import time


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """Checks an OAuth-Manager-Signature header against the raw request body."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, signature = fields.get("t", ""), fields.get("v1", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False  # missing, or too old: a replay
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


if __name__ == "__main__":
    valid = verify(os.environ["OAUTH_WEBHOOK_SECRET"], sys.argv[1], sys.stdin.buffer.read())
    sys.exit(0 if valid else 1)
