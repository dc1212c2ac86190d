"""`fjs` outside a clone: the repository tools say what they need in one line."""

from __future__ import annotations

import pytest

from apps.fjs import cli, compose_stack


@pytest.mark.parametrize("argv", [["demo"], ["local", "up"], ["site-bundle", "x", "--superlink", "h:9092"]])
def test_repository_tools_outside_a_clone_name_the_fix(argv, tmp_path, monkeypatch):
    monkeypatch.setattr(compose_stack, "REPO", tmp_path)  # what a non-editable install sees: no compose files
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    message = str(done.value)
    assert message.startswith(f"fjs: error: `fjs {' '.join(argv[:2]) if argv[0] == 'local' else argv[0]}` uses")
    assert "compose.yaml" in message and "pip install -e ." in message and "\n" not in message


def test_connect_works_anywhere(tmp_path, monkeypatch):
    monkeypatch.setattr(compose_stack, "REPO", tmp_path)
    (tmp_path / "ca.crt").write_text("x")
    cli.main(["connect", "--no-probe", "--ca", str(tmp_path / "ca.crt"), "--flwr-home", str(tmp_path / "home")])
    assert (tmp_path / "home" / "config.toml").exists()
