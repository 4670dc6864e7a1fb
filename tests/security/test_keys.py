"""Key generation (`restic-runner keys generate`): formats, round-trips, secret files."""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from standardwebhooks.webhooks import Webhook

from security.auth import Client, SeenIds, authenticate, parse_whsec, sign_v1
from security.keys import (
    new_ed25519,
    new_token,
    new_whsec,
    parse_whpk,
    parse_whsk,
    public_from_whsk,
    sign_v1a,
    write_secret_file,
)

B64_32 = r"[A-Za-z0-9+/]{43}="  # standard base64 of 32 bytes, padded

# Test vector of the reference implementation (standard-webhooks, libraries/go,
# webhook_asymmetric_test.go: TestAsymmetricWebhookSign).
REF_WHSK = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="
REF_ID, REF_TS, REF_BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
REF_SIG = ("v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5Wqye"
           "FiL8Ag==")


def test_whsec_format_and_use() -> None:
    secret = new_whsec()
    assert re.fullmatch(rf"whsec_{B64_32}", secret)
    key = parse_whsec(secret)
    assert len(key) == 32 and new_whsec() != secret
    when = datetime.fromtimestamp(1_700_000_000, tz=UTC)
    assert Webhook(secret).sign("msg_1", when, "{}") == sign_v1(key, "msg_1", 1_700_000_000, b"{}")


def test_token_format_and_use(tmp_path: Path) -> None:
    token = new_token()
    assert re.fullmatch(r"rrt_[A-Za-z0-9_-]{43}", token)
    assert len(base64.urlsafe_b64decode(token[4:] + "=")) == 32
    assert new_token() != token
    client = Client("cron", ("*",), tokens=(token,))
    found = authenticate([client], {"Authorization": f"Bearer {token}"}, b"", now=0,
                         seen=SeenIds(tmp_path / "auth.sqlite"))
    assert found is client


def test_ed25519_format() -> None:
    whsk, whpk = new_ed25519()
    assert re.fullmatch(rf"whsk_{B64_32}", whsk)
    assert re.fullmatch(rf"whpk_{B64_32}", whpk)
    assert len(parse_whsk(whsk)) == 32 and len(parse_whpk(whpk)) == 32
    assert public_from_whsk(whsk) == whpk
    assert new_ed25519()[0] != whsk


def test_ed25519_round_trip_with_cryptography() -> None:
    whsk, whpk = new_ed25519()
    message = b"msg_1.1700000000." + b'{"status": "success"}'
    signature = Ed25519PrivateKey.from_private_bytes(parse_whsk(whsk)).sign(message)
    public = Ed25519PublicKey.from_public_bytes(parse_whpk(whpk))
    public.verify(signature, message)
    with pytest.raises(InvalidSignature):
        public.verify(signature, message + b" ")
    ours = sign_v1a(whsk, "msg_1", 1700000000, b'{"status": "success"}')
    public.verify(base64.b64decode(ours.removeprefix("v1a,")), message)


def test_reference_test_vector() -> None:
    assert sign_v1a(REF_WHSK, REF_ID, REF_TS, REF_BODY) == REF_SIG
    whpk = public_from_whsk(REF_WHSK)
    signature = base64.b64decode(REF_SIG.removeprefix("v1a,"))
    Ed25519PublicKey.from_public_bytes(parse_whpk(whpk)).verify(
        signature, f"{REF_ID}.{REF_TS}.".encode() + REF_BODY)


@pytest.mark.parametrize(
    "value",
    ["VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=",  # no prefix
     "whpk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=",  # the public kind
     "whsk_" + base64.b64encode(b"x" * 31).decode(),
     "whsk_" + base64.b64encode(b"x" * 64).decode(),
     "whsk_not base64!"],
)
def test_bad_whsk_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="Ed25519 private key") as caught:
        public_from_whsk(value)
    assert value[5:] not in str(caught.value)


def test_bad_whpk_is_refused() -> None:
    with pytest.raises(ValueError, match="Ed25519 public key"):
        parse_whpk(REF_WHSK)


def test_importing_keys_does_not_import_cryptography() -> None:
    code = "import sys, security.auth, security.keys; sys.exit('cryptography' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


# --------------------------------------------------------------------------- secret files


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_secret_file_mode_and_content(tmp_path: Path) -> None:
    old = os.umask(0)  # a permissive umask must not widen the mode
    try:
        write_secret_file(tmp_path / "a.whsec", "whsec_abc")
    finally:
        os.umask(old)
    assert (tmp_path / "a.whsec").read_text() == "whsec_abc\n"
    assert _mode(tmp_path / "a.whsec") == 0o600
    write_secret_file(tmp_path / "b.token", "rrt_x\n")
    assert (tmp_path / "b.token").read_text() == "rrt_x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.whsec", "b.token"]  # no temp files


def test_secret_file_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "runner.whsk"
    write_secret_file(path, "first")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_secret_file(path, "second")
    assert path.read_text() == "first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["runner.whsk"]


def test_secret_file_force_replaces(tmp_path: Path) -> None:
    path = tmp_path / "runner.whsk"
    path.write_text("old\n")
    path.chmod(0o644)
    write_secret_file(path, "new", force=True)
    assert path.read_text() == "new\n" and _mode(path) == 0o600


def test_secret_file_never_writes_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep\n")
    link = tmp_path / "link.whsec"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        write_secret_file(link, "secret")
    dangling = tmp_path / "dangling.whsec"
    dangling.symlink_to(tmp_path / "missing")
    with pytest.raises(FileExistsError):
        write_secret_file(dangling, "secret")
    assert not (tmp_path / "missing").exists()
    write_secret_file(link, "secret", force=True)
    assert target.read_text() == "keep\n"
    assert not link.is_symlink() and link.read_text() == "secret\n" and _mode(link) == 0o600


def test_secret_file_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_secret_file(tmp_path / "nope" / "x.whsec", "secret")
