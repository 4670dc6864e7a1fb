"""/readyz names what keeps the service from running jobs (Flask's test client: no server)."""

from __future__ import annotations

from runner.configuration.load import load_config
from runner.service.api import create_app
from tests.support.service import token_client
from tests.support.workspace import Workspace


def test_readyz_is_503_naming_the_failing_checks(ws18: Workspace) -> None:
    ws18.write_config(f"""
[jobs.broken]
kind = "check"
binary = "{ws18.root}/no-such-restic"
""" + token_client(ws18))
    app = create_app(load_config(str(ws18.config_path)))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    doc = response.get_json(force=True)
    failing = {c["name"] for c in doc["checks"] if not c["ok"]}
    assert failing == {f"binary:{ws18.root}/no-such-restic", "launcher"}
    assert "binary:" in doc["detail"] and "launcher" in doc["detail"]
    assert app.test_client().get("/healthz").status_code == 200
