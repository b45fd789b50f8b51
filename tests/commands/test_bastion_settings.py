"""The bastion's settings come from the one loader like every other: a .env file or
--env-file works for BASTION_KNOWN_HOSTS as it does for BASTION_HOST (the sandbox writes
both into its env file)."""

from __future__ import annotations

from helpers.bastion import bastion_env
from helpers.common import server_env


def test_known_hosts_from_an_env_file(cli, redis_plain, sshd, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/known_hosts to fall back on
    env = {**server_env(redis_plain), **bastion_env(sshd)}
    env_file = tmp_path / "bastion.env"
    env_file.write_text(f"BASTION_KNOWN_HOSTS={env.pop('BASTION_KNOWN_HOSTS')}\n")
    r = cli("ping", "--via-bastion", "--json", "--env-file", str(env_file), env=env)
    assert r.code == 0, r.err
    assert r.json()["reply"] == "PONG"


def test_known_hosts_from_the_environment_still_wins_over_the_default(
    cli, redis_plain, sshd, tmp_path, monkeypatch
):
    monkeypatch.setenv("HOME", str(tmp_path))
    env = {**server_env(redis_plain), **bastion_env(sshd)}
    assert cli("ping", "--via-bastion", env=env).code == 0
    env["BASTION_KNOWN_HOSTS"] = str(tmp_path / "empty")
    r = cli("ping", "--via-bastion", env=env)
    assert r.code == 4 and "is not in" in r.err  # checked against that (empty) file
