"""Whose request_ids a call may use: the namespace that the registry keeps
jobs under, for reattach, Cancel and REQUEST_ID_IN_USE.

With tokens (`--auth-token-file`) a client is its token's name, and its
request_ids are its own.

Without tokens a client is only its peer's host, which every process on that
host shares (and every client behind one proxy or mesh). Then the namespace
is the host and the *job secret*: a random value of 16 to 256 printable ASCII
characters that the caller sends as the metadata `stylize-job-secret` with its
Stylize call, and again to reattach or to Cancel (the client library makes
one per client object and sends it on every call). A process without that
secret sees an empty namespace: another's request_id is free to it (it starts
a job of its own), and Cancel answers NOT_FOUND, exactly as for an id that
never existed. A call without a secret has no namespace at all: its
request_id only names the job in logs and frames; the job stops with its
stream and nobody can attach to it or cancel it.

Only a hash of the secret is kept, and it is never logged. Fair share and
quotas stay per client (host): a new secret is no new quota.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable

from stylize_server.job.errors import InvalidArgument

JOB_SECRET_KEY = "stylize-job-secret"
_SECRET = re.compile(r"^[\x21-\x7e]{16,256}$")

Metadata = Iterable[tuple[str, str | bytes]]


def job_secret(metadata: Metadata | None) -> str | None:
    """The call's job secret; None without one. InvalidArgument when malformed
    (its length only is named, never its characters)."""
    for key, value in metadata or ():
        if key.lower() == JOB_SECRET_KEY:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            if not _SECRET.match(text):
                raise InvalidArgument(
                    JOB_SECRET_KEY,
                    f"the job secret must be 16 to 256 printable ASCII characters without spaces, got {len(text)}",
                )
            return text
    return None


def owner_of(auth_enabled: bool, client: str, metadata: Metadata | None) -> str | None:
    """The namespace of the call's request_ids; None when it has none (no auth, no secret)."""
    if auth_enabled:
        return client
    secret = job_secret(metadata)
    if secret is None:
        return None
    return f"{client}#{hashlib.sha256(secret.encode()).hexdigest()[:32]}"


def private_owner(client: str) -> str:
    """A namespace nobody can name: a job without one is kept under it."""
    return f"{client}#private-{uuid.uuid4().hex}"


NO_SECRET_HINT = (
    f"; without auth, a job can be reattached and cancelled only with the metadata `{JOB_SECRET_KEY}` "
    "its Stylize call was sent with"
)
