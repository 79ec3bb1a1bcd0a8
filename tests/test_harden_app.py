"""Shared-server mode in AppTest and the CLI: the access token gate, the remote-code switch, the bind address."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dgr_core import cli
from dgr_core.security import is_loopback, remote_code_allowed, token_matches

REPO = Path(__file__).resolve().parents[1]


def open_app(**state) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.session_state["backend"] = "fake"
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def test_access_token_is_asked_once_per_session(demo_ws, monkeypatch):
    monkeypatch.setenv("DGR_ACCESS_TOKEN", "s3cret-token")
    at = open_app()
    assert not at.exception and at.title[0].value == "DGR Lens" and not at.selectbox  # nothing else is drawn
    at.text_input(key="dgr_access_token").input("wrong").run()
    assert "Wrong access token." in [e.value for e in at.error] and not at.selectbox
    at.text_input(key="dgr_access_token").input("s3cret-token").run()
    assert not at.exception and at.title[0].value == "Datasets"
    at.run()  # later reruns of the same session do not ask again
    assert at.title[0].value == "Datasets"


def test_no_token_configured_opens_directly(demo_ws, monkeypatch):
    monkeypatch.delenv("DGR_ACCESS_TOKEN", raising=False)
    assert open_app().title[0].value == "Datasets"


def test_remote_code_checkbox_is_disabled_unless_allowed(demo_ws, monkeypatch):
    monkeypatch.delenv("DGR_ALLOW_REMOTE_CODE", raising=False)
    at = open_app()
    box = at.sidebar.checkbox(key="model_trust")
    assert box.disabled and "DGR_ALLOW_REMOTE_CODE=1" in box.help
    at.session_state["model_trust"] = True  # even a forced value never reaches the model spec
    at.run()
    assert at.session_state["target_model"].trust_remote_code is False
    monkeypatch.setenv("DGR_ALLOW_REMOTE_CODE", "1")
    at = open_app()
    assert not at.sidebar.checkbox(key="model_trust").disabled and remote_code_allowed()


@pytest.mark.parametrize(("address", "loopback"), [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                                    ("127.3.4.5", True), ("0.0.0.0", False), ("", False),
                                                    ("10.1.2.3", False), ("myhost", False), ("[::1]", True)])
def test_is_loopback(address, loopback):
    assert is_loopback(address) is loopback


def test_token_comparison():
    assert token_matches("abc", "abc") and not token_matches("abd", "abc") and not token_matches("", "")


def test_dgr_app_binds_on_the_command_line_and_refuses_open_addresses(monkeypatch, capsys):
    command = cli.app_command("127.0.0.1", 8600)
    assert command[-6:] == ["--server.address", "127.0.0.1", "--server.port", "8600", "--server.headless", "true"]
    assert command[command.index("run") + 1] == str(REPO / "app.py")  # an absolute path: works from any folder
    monkeypatch.delenv("DGR_ACCESS_TOKEN", raising=False)
    assert cli.main(["app", "--address", "0.0.0.0"]) == 2
    assert "refusing to listen on 0.0.0.0" in capsys.readouterr().err
