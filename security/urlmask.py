"""Masking credentials in repository, endpoint and webhook URLs (pure functions).

Userinfo rule (repository and endpoint strings)
-----------------------------------------------
Passwords may contain ``/ @ : % ? #``, so the RFC authority parse is not used. Instead:

* URL form (``scheme://`` where the text before ``://`` is a scheme or ``backend:scheme``,
  e.g. ``rest:https``): the userinfo is everything between ``//`` and the LAST ``@`` that is
  followed by a host (``[ipv6]`` or a name without whitespace and ``/?#@:[]``), an optional
  ``:port`` and then ``/``, ``?``, ``#`` or the end. If no ``@`` qualifies, the last ``@`` is used.
* ``backend:user:pass@host:path`` form (restic backends local/sftp/rest/s3/swift/b2/azure/gs,
  and a bare ``user:pass@host`` with no known backend): the same, after ``backend:``, where the
  host is followed by ``:``, ``/`` or the end.
* The password is everything after the FIRST ``:`` of the userinfo; it becomes ``***``. A
  userinfo without ``:`` (or with an empty password) is left unchanged: the username stays.

So a path or query that itself contains ``@`` (and a ``:`` before it) is masked too: the rule
prefers hiding too much over leaking. Absolute paths, ``rclone:remote:path`` (rclone rules, see
`mask_endpoint`) and strings without ``@`` are never changed. A bare ``user:pass@host`` whose user
is a backend name (``sftp:pass@host``) reads as ``backend:user@host``: no password.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

# ---------------------------------------------------------------------------------------------
# URL and endpoint masking
# ---------------------------------------------------------------------------------------------

_SCHEME_CHAIN = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*(?::[A-Za-z][A-Za-z0-9+.\-]*)?\Z")
# restic backends whose location may carry `user:pass@host`
_CRED_BACKENDS = frozenset({"local", "sftp", "rest", "s3", "swift", "b2", "azure", "gs"})
_URL_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]*\]|[^\s/?#@:\[\]]+)(?::\d*)?(?:[/?#]|\Z)")
_SCP_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]*\]|[^\s/?#@:\[\]]+)(?:[:/]|\Z)")
# rclone connection string: `:backend,k=v:path` or `remote,k=v:path`
_CONN_STRING = re.compile(r"(?::[\w\-]*|[\w.+@\- ]+)(?=,)")
_SENSITIVE_KEY = re.compile(
    r"pass|secret|token|credential|sas_url|bearer|pem|private|(?:^|_)key(?:_base64)?$"
)
_WEBHOOK_SCHEME = re.compile(r"(https?)://", re.IGNORECASE)
_HOSTPORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[\w.\-]+)(?::(\d{0,5}))?")
_AUTHORITY_END = re.compile(r"[/?#]")

# (start, end, value, kind): kind "url" (percent-encoded userinfo password) or "param"
_Span = tuple[int, int, str, str]


def _find_at(s: str, start: int, host_rx: re.Pattern[str]) -> int:
    """Index of the last `@` at or after `start` followed by a host (else the last `@`, or -1)."""
    last = at = s.rfind("@", start)
    while at >= start:
        if host_rx.match(s, at + 1):
            return at
        at = s.rfind("@", start, at)
    return last


def _userinfo_span(s: str, start: int, host_rx: re.Pattern[str]) -> list[_Span]:
    at = _find_at(s, start, host_rx)
    if at < 0:
        return []
    colon = s.find(":", start, at)
    if colon < 0 or colon + 1 == at:
        return []
    return [(colon + 1, at, s[colon + 1 : at], "url")]


def _is_url_prefix(prefix: str) -> bool:
    """`https`, `sftp`, or `backend:https` (a bare `user:x` before `://` is a password, not one)."""
    if not _SCHEME_CHAIN.match(prefix):
        return False
    backend, colon, _ = prefix.partition(":")
    return not colon or backend.lower() in _CRED_BACKENDS


def _repository_spans(t: str, bare: bool) -> list[_Span]:
    i = t.find("://")
    if i > 0 and _is_url_prefix(t[:i]):
        return _userinfo_span(t, i + 3, _URL_HOST)
    if t.startswith("/"):
        return []
    c = t.find(":")
    if c > 0 and t[:c].lower() in _CRED_BACKENDS:
        return _userinfo_span(t, c + 1, _SCP_HOST)
    if bare:
        return _userinfo_span(t, 0, _SCP_HOST)
    if i >= 0:
        return _userinfo_span(t, i + 3, _URL_HOST)
    return []


def _connection_spans(t: str, i: int) -> list[_Span]:
    """Sensitive `key=value` parameters of an rclone connection string (t[i] is the first `,`)."""
    spans: list[_Span] = []
    n = len(t)
    while 0 <= i < n:
        i = _params(t, i, spans)
        i = t.find(",", i)  # a badly quoted value ends the parameters early: scan the rest too
    # URL userinfo anywhere (inside `url=` values or the path)
    pos = t.find("://")
    while pos >= 0:
        spans.extend(_userinfo_span(t, pos + 3, _URL_HOST))
        pos = t.find("://", pos + 3)
    return spans


def _params(t: str, i: int, spans: list[_Span]) -> int:
    """Parse `,key=value` pairs from t[i]; add sensitive values to `spans`; return the end."""
    n = len(t)
    while i < n and t[i] == ",":
        i += 1
        k0 = i
        while i < n and t[i] not in ",=:":
            i += 1
        key = t[k0:i].strip().lower().replace("-", "_")
        if i >= n or t[i] != "=":
            continue
        i += 1
        if i < n and t[i] in "'\"":
            q = t[i]
            i += 1
            v0 = i
            while True:
                j = t.find(q, i)
                if j < 0:  # unterminated quote: the value runs to the end
                    v1 = i = n
                    break
                if j + 1 < n and t[j + 1] == q:
                    i = j + 2
                    continue
                v1, i = j, j + 1
                break
            value = t[v0:v1].replace(q + q, q)
        else:
            v0 = i
            while i < n and t[i] not in ",:":
                i += 1
            v1, value = i, t[v0:i]
        if value and _SENSITIVE_KEY.search(key):
            spans.append((v0, v1, value, "param"))
    return i


def _spans(s: str, bare: bool) -> list[_Span]:
    """Secret spans of a repository (`bare=True`) or rclone endpoint string."""
    t = s.strip()
    lead = len(s) - len(s.lstrip())
    if t[:7].lower() == "rclone:":
        found = _spans(t[7:], bare=False)
        lead += 7
    else:
        m = _CONN_STRING.match(t)
        found = _connection_spans(t, m.end()) if m else _repository_spans(t, bare)
    return [(a + lead, b + lead, v, k) for a, b, v, k in found]


def _apply(s: str, spans: list[_Span]) -> str:
    if not spans:
        return s
    out: list[str] = []
    pos = 0
    for a, b, _, _ in sorted(spans):
        if b <= pos:
            continue
        a = max(a, pos)
        out.append(s[pos:a])
        out.append(MASK)
        pos = b
    out.append(s[pos:])
    return "".join(out)


def mask_repository(url: str) -> str:
    """The repository string with its password replaced by `***` (username kept). Never raises."""
    try:
        return _apply(url, _spans(url, bare=True)) if url else url
    except Exception:
        return MASK


def mask_endpoint(s: str) -> str:
    """An rclone endpoint with `pass=`-like parameter values and URL passwords masked.

    Covers `remote:path`, `:backend,user=x,pass=y:path`, `remote,key=v:path`, URL userinfo and
    restic-style `backend:user:pass@host` strings. A plain `remote:path` is never changed, even when
    the path contains `@`. Never raises.
    """
    try:
        return _apply(s, _spans(s, bare=False)) if s else s
    except Exception:
        return MASK


def url_password(url: str, *, decode: bool = True, endpoint: bool = False) -> str | None:
    """The password in a repository (or, with `endpoint=True`, rclone endpoint) string, or None.

    URL passwords are percent-decoded (as the server sees them) unless `decode=False`; rclone
    connection-string values are returned unquoted. Found by the same rules as `mask_repository`
    / `mask_endpoint`.
    """
    try:
        spans = sorted(_spans(url, bare=not endpoint)) if url else []
    except Exception:
        return None
    if not spans:
        return None
    _, _, value, kind = spans[0]
    return unquote(value) if decode and kind == "url" else value


def url_secrets(s: str, *, endpoint: bool = False) -> list[str]:
    """Every credential value in a repository/endpoint string, raw and percent-decoded: what the
    caller should register so that the credential is also masked in tool output."""
    try:
        spans = sorted(_spans(s, bare=not endpoint)) if s else []
    except Exception:
        return []
    out: dict[str, None] = {}
    for _, _, value, kind in spans:
        out[value] = None
        if kind == "url":
            out[unquote(value)] = None
    return list(out)


def _webhook_hostport(rest: str) -> str | None:
    """`host[:port]` of a URL remainder after `//`, or None if unparsable or ambiguous."""

    def hostport(part: str) -> str | None:
        m = _HOSTPORT.fullmatch(part)
        if not m:
            return None
        host, port = m.group(1), m.group(2)
        return f"{host}:{port}" if port else host

    def authority_end(start: int) -> int:
        m = _AUTHORITY_END.search(rest, start)
        return m.start() if m else len(rest)

    end = authority_end(0)
    authority = rest[:end]
    rfc = hostport(authority[authority.rfind("@") + 1 :])
    # the liberal reading: the last `@` followed by a host whose username has no `/?#`
    liberal = rfc
    at = rest.rfind("@")
    while at >= 0:
        user = rest[:at].partition(":")[0]
        if _URL_HOST.match(rest, at + 1) and not any(c in user for c in "/?#"):
            liberal = hostport(rest[at + 1 : authority_end(at + 1)])
            break
        at = rest.rfind("@", 0, at)
    if rfc and liberal and rfc != liberal:
        return None  # e.g. `https://u:12/x@host`: port 12 or password "12/x"? Show nothing.
    return rfc or liberal


def mask_webhook_url(url: str) -> str:
    """`scheme://host[:port]/...` for http(s) URLs (no userinfo, path or query); else `***`."""
    try:
        s = url.strip()
        m = _WEBHOOK_SCHEME.match(s)
        if not m:
            return MASK
        hp = _webhook_hostport(s[m.end() :])
        return f"{m.group(1).lower()}://{hp}/..." if hp else MASK
    except Exception:
        return MASK
