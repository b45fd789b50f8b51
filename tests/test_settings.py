"""The one settings loader: precedence, empty values, validation, secrets."""

from __future__ import annotations

import pytest

from closeup_ops.errors import UsageError
from closeup_ops.settings import Secret, Settings, load, parse_env_file


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load({}, environ={})
    assert (s.host, s.port, s.db, s.timeout) == ("localhost", 6379, 0, 5.0)
    assert s.tls is None and s.cluster is None and s.password is None
    assert s.bastion_port == 22 and s.bastion_user == "ec2-user"


def test_precedence_flag_env_dotenv_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("REDIS_HOST=from-dotenv\nREDIS_PORT=7001\nREDIS_DB=2\n")
    env = {"REDIS_HOST": "from-env", "REDIS_PORT": "7002"}
    s = load({"host": "from-flag"}, environ=env)
    assert s.host == "from-flag"  # flag beats env
    assert s.port == 7002  # env beats .env
    assert s.db == 2  # .env beats default
    assert s.timeout == 5.0  # default


def test_empty_values_count_as_unset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text('REDIS_PASSWORD=""\nREDIS_HOST=dotenv-host\n')
    s = load({}, environ={"REDIS_HOST": "", "REDIS_PORT": "  "})
    assert s.password is None
    assert s.host == "dotenv-host"  # empty env value falls through to .env
    assert s.port == 6379


def test_env_file_flag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("REDIS_HOST=cwd\n")
    other = tmp_path / "prod.env"
    other.write_text("export REDIS_HOST='prod-host' # comment\nREDIS_TLS=true\n")
    s = load({}, env_file=other, environ={})
    assert s.host == "prod-host" and s.tls is True


def test_guide_env_block_parses(tmp_path):
    # the guide's own .env block, comments and all
    path = tmp_path / ".env"
    path.write_text(
        'REDIS_HOST="demo-du95w6.serverless.aps1.cache.amazonaws.com"\n'
        "REDIS_PORT=6379\n"
        'REDIS_PASSWORD=""  # Set if AUTH token is enabled\n'
        "REDIS_DB=0\n"
    )
    values = parse_env_file(path)
    assert values["REDIS_PASSWORD"] == ""
    s = load({}, env_file=path, environ={})
    assert s.serverless and s.use_tls  # serverless: TLS without asking
    assert s.password is None


@pytest.mark.parametrize(
    "line", ["no equals sign", "=value", "1KEY=x", 'K="unclosed', 'K="a" trailing']
)
def test_malformed_env_lines(tmp_path, line):
    path = tmp_path / ".env"
    path.write_text(f"REDIS_HOST=x\n{line}\n")
    with pytest.raises(UsageError) as err:
        parse_env_file(path)
    assert "line 2" in err.value.message
    assert line not in err.value.line()  # the line may hold a secret: never echoed


@pytest.mark.parametrize(
    "var,value,allowed",
    [
        ("REDIS_PORT", "abc", "port number"),
        ("REDIS_PORT", "70000", "1 to 65535"),
        ("REDIS_TIMEOUT", "-1", "above 0"),
        ("REDIS_TIMEOUT", "nan", "above 0"),
        ("REDIS_TLS", "maybe", "true, false or auto"),
        ("REDIS_CLUSTER", "2", "true, false or auto"),
        ("REDIS_IAM_AUTH", "auto", "true or false"),
        ("REDIS_DB", "x", "database number"),
        ("REDIS_CA_CERT", "/no/such/file", "readable"),
    ],
)
def test_bad_values_name_variable_and_allowed(tmp_path, monkeypatch, var, value, allowed):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as err:
        load({}, environ={var: value})
    line = err.value.line()
    assert var in line and allowed in line
    assert err.value.exit_code == 2


def test_secret_never_in_repr_or_public(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load({}, environ={"REDIS_PASSWORD": "hunter2-xyz"})
    assert isinstance(s.password, Secret)
    assert s.password.reveal() == "hunter2-xyz"
    for text in (repr(s), str(s), repr(s.password), str(s.public())):
        assert "hunter2-xyz" not in text


def test_prompted_password_beats_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load({}, environ={"REDIS_PASSWORD": "env-pass"}, password="typed-pass")
    assert s.password.reveal() == "typed-pass"


def test_tls_server_name_defaults_to_host():
    assert Settings(host="a.example").server_name == "a.example"
    assert Settings(host="127.0.0.1", tls_server_name="real").server_name == "real"


def test_iam_needs_user_and_tls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="REDIS_USERNAME"):
        load({}, environ={"REDIS_IAM_AUTH": "true"})
    with pytest.raises(UsageError, match="TLS"):
        load({}, environ={"REDIS_IAM_AUTH": "true", "REDIS_USERNAME": "u", "REDIS_TLS": "false"})


@pytest.mark.parametrize(
    "value,host",
    [
        ("[::1]", "::1"),  # brackets, as in a URL, are taken off
        ("::1", "::1"),
        ("fe80::1%eth0", "fe80::1%eth0"),
        (
            "master.demo.abc123.use1.cache.amazonaws.com",
            "master.demo.abc123.use1.cache.amazonaws.com",
        ),
        ("10.0.1.7", "10.0.1.7"),
    ],
)
def test_hosts_that_are_hosts(tmp_path, monkeypatch, value, host):
    monkeypatch.chdir(tmp_path)
    assert load({}, environ={"REDIS_HOST": value}).host == host


@pytest.mark.parametrize(
    "value,says",
    [
        # the AWS console shows endpoints as host:port
        ("master.demo.abc123.use1.cache.amazonaws.com:6379", "host alone (master.demo.abc123"),
        ("127.0.0.1:6380", "REDIS_PORT (6380)"),
        ("redis://127.0.0.1", "URL"),
        ("cache/0", "URL"),
        ("a:b", "a host name or address"),
    ],
)
def test_hosts_that_are_not_hosts(tmp_path, monkeypatch, value, says):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as err:
        load({}, environ={"REDIS_HOST": value})
    assert "REDIS_HOST" in err.value.line() and says in err.value.line()
    assert err.value.exit_code == 2
