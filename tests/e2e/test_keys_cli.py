"""`restic-runner keys generate` and `GET /keys`."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from runner.configuration.load import load_config
from runner.service.api import create_app
from security.auth import parse_whsec
from security.keys import parse_whpk, parse_whsk
from tests.support.paths import RUNNER
from tests.support.service import token_client
from tests.support.workspace import Workspace


def _generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNNER, "keys", "generate", *args], capture_output=True, text=True,
                          timeout=30)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_generate_writes_private_files(tmp_path: Path) -> None:
    whsec, token, key = tmp_path / "c.whsec", tmp_path / "c.token", tmp_path / "signing.whsk"
    assert _generate("whsec", "--out", str(whsec)).returncode == 0
    assert len(parse_whsec(whsec.read_text().strip())) == 32
    assert _generate("token", "--out", str(token)).returncode == 0
    assert len(token.read_text().strip()) >= 40
    done = _generate("ed25519", "--out", str(key))
    assert done.returncode == 0
    public = Path(f"{key}.pub").read_text().strip()
    assert f"public key: {public}" in done.stdout
    assert len(parse_whsk(key.read_text().strip())) == 32 and len(parse_whpk(public)) == 32
    for secret in (whsec, token, key):
        assert _mode(secret) == 0o600
        assert secret.read_text().strip() not in done.stdout + done.stderr
    again = _generate("whsec", "--out", str(whsec))
    assert again.returncode == 2 and "exists; pass --force" in again.stderr
    before = whsec.read_text()
    assert _generate("whsec", "--out", str(whsec), "--force").returncode == 0
    assert whsec.read_text() != before and _mode(whsec) == 0o600


def test_keys_endpoint_serves_the_signing_public_key(ws18: Workspace) -> None:
    key = ws18.root / "runner.whsk"
    assert _generate("ed25519", "--out", str(key)).returncode == 0
    ws18.write_config('[jobs.check]\nkind = "check"\n' + token_client(ws18)
                    + f'[signing]\nkey_file = "{key}"\n')
    app = create_app(load_config(str(ws18.config_path)))
    keys = app.test_client().get("/keys").get_json()
    assert keys == {"keys": [Path(f"{key}.pub").read_text().strip()]}
