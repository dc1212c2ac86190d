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


@pytest.mark.parametrize("argv, says", [
    (["demo", "--nodes", "0"], "--nodes must be a whole number of at least 1, got '0'"),
    (["demo", "--nodes", "ten"], "--nodes must be a whole number of at least 1, got 'ten'"),
    (["local", "up", "--nodes", "-2"], "--nodes must be a whole number of at least 1, got '-2'"),
    (["demo", "--nodes", "100000"], "this host has"),
    (["site-bundle", "a", "--superlink", "h:9092", "--nodes", "0"], "at least 1"),
    (["demo", "--run-config", "num-server-rounds=abc"], "--run-config 'num-server-rounds=abc' is not `key=value ...`"),
    (["demo", "--run-config", "num-server-rounds=0"], "--run-config: run config 'num-server-rounds' must be"),
    (["demo", "--run-config", "rounds=3"], "--run-config: unknown key 'rounds': the App's keys are num-server-rounds"),
    (["local", "up", "--run", "--run-config", "batch-size=-1"], "--run-config: run config 'batch-size' must be"),
])
def test_a_bad_node_count_is_one_line_before_anything_starts(argv, says, capsys, monkeypatch):
    import subprocess

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("nothing may run for a bad --nodes"))
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    err = capsys.readouterr().err or str(done.value)  # argparse prints its line; fjs' own errors exit with it
    assert done.value.code in (1, 2, err) and says in err and len(err.strip().splitlines()) == 1, err
