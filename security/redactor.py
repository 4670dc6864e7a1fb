"""The redactor: every secret value the runner has read, in every encoding, replaced by `***`
in all tool output (restic, rclone, hooks) — one-shot or streaming, on bytes."""

from __future__ import annotations

import base64
import json
import re
import threading
from urllib.parse import quote, quote_plus

MASK = "***"
_MASK_B = MASK.encode()

# A secret shorter than this is ignored: a value of 1-3 characters ("0", "yes", "abc") occurs all
# over ordinary output, so masking it would shred every log line while protecting next to nothing.
MIN_SECRET_LEN = 4

# ---------------------------------------------------------------------------------------------
# Secret registry and redaction
# ---------------------------------------------------------------------------------------------

_GRAM = 4  # anchor length; every form is at least MIN_SECRET_LEN (4) bytes long
_MIN_B64_FRAGMENT = 8
_MERGE_CAP = 4096  # a run of overlapping occurrences stops growing at this length
_LINE_LIMIT = 64 * 1024  # a partial line longer than this is emitted without waiting for `\n`
# Bytes of typical restic/rclone JSON output, most frequent first; anything else counts as rare.
_COMMON_BYTES = b'"e_at:si,o0n1r2d.l5c3/4u9m6f7p8{}\n-bgyhkvw TxSRLzDMECFAIjqBNOPUGHKVWXYZJQ[]'
_BYTE_COST = [0] * 256
for _i, _b in enumerate(_COMMON_BYTES):
    _BYTE_COST[_b] = len(_COMMON_BYTES) - _i
del _i, _b
_PCT_HEX = re.compile(rb"%[0-9A-F]{2}")
_GO_JSON = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def _to_bytes(s: str) -> bytes:
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass")


def _b64_fragments(raw: bytes) -> set[bytes]:
    """Base64 (standard and urlsafe) of `raw` at the 3 byte alignments, keeping only the characters
    that depend on `raw` alone, so the fragment is found inside any larger base64 blob."""
    out: set[bytes] = set()
    n = len(raw)
    for enc in (base64.b64encode, base64.urlsafe_b64encode):
        for k in range(3):
            e = enc(b"\0" * k + raw).rstrip(b"=")
            frag = e[(0, 2, 3)[k] : len(e) - (1 if (k + n) % 3 else 0)]
            if len(frag) >= _MIN_B64_FRAGMENT:
                out.add(frag)
    return out


def _normalize(secret: str | bytes | bytearray | memoryview) -> bytes | None:
    if isinstance(secret, str):
        text = secret.strip()
        return _to_bytes(text) if len(text) >= MIN_SECRET_LEN else None
    if isinstance(secret, bytes | bytearray | memoryview):
        raw = bytes(secret).strip()
        return raw if len(raw) >= MIN_SECRET_LEN else None
    raise TypeError(f"a secret must be str or bytes, not {type(secret).__name__}")


def _forms_of(raw: bytes) -> set[bytes]:
    forms = {raw}
    urls = {
        quote(raw, safe=""),
        quote(raw, safe="/"),
        quote_plus(raw),
        quote(raw, safe="$&+,;="),  # Go url.UserPassword
        quote(raw, safe="!'()*"),  # JavaScript encodeURIComponent
    }
    for u in urls:
        b = u.encode()
        forms.add(b)
        forms.add(_PCT_HEX.sub(lambda m: m.group().lower(), b))
        if any(c in u for c in "<>&"):  # the URL inside Go-encoded JSON
            forms.add(u.replace("&", "\\u0026").replace("<", "\\u003c").encode())
    text = raw.decode("utf-8", "replace")
    ascii_json = json.dumps(text, ensure_ascii=True)[1:-1]
    utf8_json = json.dumps(text, ensure_ascii=False)[1:-1]
    go_json = utf8_json
    for char, esc in _GO_JSON:
        go_json = go_json.replace(char, esc)
    for j in (ascii_json, utf8_json, go_json, ascii_json.replace("/", "\\/")):
        forms.add(_to_bytes(j))
    forms |= _b64_fragments(raw)
    return {f for f in forms if len(f) >= _GRAM}


def encoded_forms(secret: str | bytes) -> frozenset[bytes]:
    """Every byte form in which `secret` is masked (empty when it is too short to register)."""
    raw = _normalize(secret)
    return frozenset(_forms_of(raw)) if raw is not None else frozenset()


def _anchor(form: bytes) -> tuple[int, bytes]:
    """The rarest `_GRAM`-byte window of `form` (weighting its first byte, which the regex
    engine's scan loop tests at every position) and its offset."""
    best = None
    for i in range(len(form) - _GRAM + 1):
        g = form[i : i + _GRAM]
        score = 16 * _BYTE_COST[g[0]] + sum(_BYTE_COST[b] for b in g[1:])
        if best is None or score < best[0]:
            best = (score, i, g)
    assert best is not None
    return best[1], best[2]


class _Matcher:
    """Immutable search structure for one set of forms.

    A single regex of the forms' anchor grams finds candidate positions (the scan cost is paid in
    C); each hit is verified with `startswith`. The result equals an exhaustive search for every
    occurrence of every form.
    """

    __slots__ = ("anchors", "has_newline", "maxlen", "prefilter")

    def __init__(self, forms: set[bytes]) -> None:
        anchors: dict[bytes, list[tuple[int, bytes]]] = {}
        for f in sorted(forms, key=lambda f: (-len(f), f)):
            off, gram = _anchor(f)
            anchors.setdefault(gram, []).append((off, f))
        self.anchors = {g: tuple(v) for g, v in anchors.items()}
        self.maxlen = max(len(f) for f in forms)
        self.has_newline = any(b"\n" in f for f in forms)
        self.prefilter = re.compile(_trie_pattern(sorted(self.anchors)))

    def regions(self, buf: bytes) -> list[tuple[int, int]]:
        """Maximal runs of overlapping occurrences, left to right (a run stops growing once it is
        `_MERGE_CAP` long; an occurrence overlapping a finished run is then dropped)."""
        search = self.prefilter.search
        m = search(buf)
        if m is None:
            return []
        anchors = self.anchors
        occ: list[tuple[int, int]] = []
        while m is not None:
            q = m.start()
            for off, form in anchors[m.group()]:
                p = q - off
                if p >= 0 and buf.startswith(form, p):
                    occ.append((p, p + len(form)))
            m = search(buf, q + 1)
        if not occ:
            return []
        occ.sort()
        out: list[tuple[int, int]] = []
        s, e = occ[0]
        for p, end in occ[1:]:
            if p < e:
                if e - s < _MERGE_CAP and end > e:
                    e = end
                continue
            out.append((s, e))
            s, e = p, end
        out.append((s, e))
        return out


def _trie_pattern(grams: list[bytes]) -> bytes:
    """Alternation of equal-length literals factored by common prefixes (faster branch tests)."""
    groups: dict[bytes, list[bytes]] = {}
    for g in grams:
        groups.setdefault(g[:1], []).append(g[1:])
    alts = []
    for head, tails in groups.items():
        tails = [t for t in tails if t]
        if not tails:
            alts.append(re.escape(head))
        elif len(tails) == 1:
            alts.append(re.escape(head) + re.escape(tails[0]))
        else:
            alts.append(re.escape(head) + b"(?:" + _trie_pattern(tails) + b")")
    return b"|".join(alts)


def _replace(buf: bytes, regions: list[tuple[int, int]], end: int) -> bytes:
    out: list[bytes] = []
    pos = 0
    for s, e in regions:
        if e > end:
            break
        out.append(buf[pos:s])
        out.append(_MASK_B)
        pos = e
    out.append(buf[pos:end])
    return b"".join(out)


class SecretRegistry:
    """Thread-safe set of secret values; redacts every known form of each of them from bytes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[bytes, None] = {}
        self._forms: set[bytes] = set()
        self._matcher: _Matcher | None = None
        self._dirty = False

    def register(self, secret: str | bytes) -> None:
        """Add a secret (surrounding whitespace stripped; shorter than MIN_SECRET_LEN: ignored)."""
        raw = _normalize(secret)
        if raw is None or raw in self._secrets:
            return
        forms = _forms_of(raw)
        with self._lock:
            self._secrets[raw] = None
            self._forms |= forms
            self._dirty = True

    def registered(self) -> tuple[bytes, ...]:
        """The secrets registered so far (for tests: `restore` puts them back)."""
        with self._lock:
            return tuple(self._secrets)

    def restore(self, secrets: tuple[bytes, ...]) -> None:
        """Forget every secret but `secrets` (for tests: what one test registered in its
        process does not mask another's output)."""
        if tuple(self._secrets) == secrets:
            return
        self.clear()
        for secret in secrets:
            self.register(secret)

    def clear(self) -> None:
        """Forget every secret (for tests)."""
        with self._lock:
            self._secrets.clear()
            self._forms.clear()
            self._matcher = None
            self._dirty = False

    @property
    def secrets_count(self) -> int:
        """How many distinct secrets are registered."""
        return len(self._secrets)

    def _current(self) -> _Matcher | None:
        if self._dirty:
            with self._lock:
                if self._dirty:
                    self._matcher = _Matcher(self._forms) if self._forms else None
                    self._dirty = False
        return self._matcher

    def redact(self, data: bytes) -> bytes:
        """`data` with every occurrence of every form of every secret replaced by `***`."""
        data = bytes(data)
        m = self._current()
        if m is None:
            return data
        regions = m.regions(data)
        return _replace(data, regions, len(data)) if regions else data

    def redact_text(self, s: str) -> str:
        """`redact` for text (UTF-8, lone surrogates preserved)."""
        if self._current() is None:
            return s
        try:
            errors, data = "surrogateescape", s.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            errors, data = "surrogatepass", s.encode("utf-8", "surrogatepass")
        out = self.redact(data)
        try:
            return out.decode("utf-8", errors)
        except UnicodeDecodeError:
            return out.decode("utf-8", "replace")

    def stream(self) -> StreamRedactor:
        """A redactor for one output stream."""
        return StreamRedactor(self)


class StreamRedactor:
    """Redacts a byte stream fed in arbitrary chunks; not thread-safe (one per stream).

    The concatenation of all `feed` results and `flush` equals `registry.redact` of the
    concatenated input, whatever the chunking (for a registry that does not change meanwhile;
    a secret registered mid-stream applies to everything not yet emitted). Complete lines are
    emitted as soon as possible; a partial line is held back until its newline, unless it grows
    past 64 KiB. Besides that, at most (longest form - 1) bytes are held back.
    """

    __slots__ = ("_pending", "_registry")

    def __init__(self, registry: SecretRegistry) -> None:
        self._registry = registry
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """Take the next chunk; return the bytes that are now safe to emit."""
        buf = self._pending + chunk if self._pending else bytes(chunk)
        n = len(buf)
        m = self._registry._current()
        regions: list[tuple[int, int]] = []
        if m is None:
            limit = n
        else:
            limit = n - m.maxlen + 1  # positions before this are decided
            if not m.has_newline:  # no form crosses a newline: all up to the last one is decided
                limit = max(limit, buf.rfind(b"\n") + 1)
            limit = max(limit, 0)
            regions = m.regions(buf)
            for i, (s, e) in enumerate(regions):
                if e > limit:  # a run that may still grow: nothing from its start on is decided
                    limit = min(limit, s)
                    del regions[i:]
                    break
        cut = buf.rfind(b"\n", 0, limit) + 1
        for s, e in regions:
            if s < cut < e:  # never cut inside a match
                cut = e
                break
        if n - cut > _LINE_LIMIT:
            cut = limit
        self._pending = buf[cut:]
        if not regions:
            return buf[:cut]
        return _replace(buf, regions, cut)

    def flush(self) -> bytes:
        """The rest, at the end of the stream."""
        rest, self._pending = self._pending, b""
        return self._registry.redact(rest) if rest else b""
