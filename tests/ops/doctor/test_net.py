"""doctor's socket checks where a real network condition cannot be made on loopback (a
dropped packet, a private VPC address) and the settings check's warnings."""

from __future__ import annotations

import socket

from closeup_ops.ops.doctor import net as doctor_net
from closeup_ops.ops.doctor.diagnose import diagnose
from closeup_ops.ops.doctor.net import Probe, check_dns, check_settings, check_tcp
from closeup_ops.settings import Settings


def test_private_address_warns_vpc_only_and_names_tunnel(monkeypatch):
    def fake(host, port, *a, **kw):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.3.17", port))]

    monkeypatch.setattr(doctor_net.socket, "getaddrinfo", fake)
    probe = Probe(Settings(host="demo-du95w6.serverless.aps1.cache.amazonaws.com"))
    check = check_dns(probe)
    assert check.status == "warn"
    assert "10.0.3.17" in check.evidence and "VPC" in check.evidence
    assert "closeup-ops tunnel" in check.fix
    assert probe.address == "10.0.3.17"


def test_loopback_is_not_called_a_vpc_address():
    check = check_dns(Probe(Settings(host="localhost")))
    assert check.status == "ok" and "loopback" in check.evidence


def test_tcp_timeout_names_the_security_group_port_and_the_vpc(monkeypatch):
    def silent(*a, **kw):
        raise TimeoutError("timed out")

    monkeypatch.setattr(doctor_net.socket, "create_connection", silent)
    probe = Probe(Settings(host="10.0.3.17", port=6379, timeout=1), address="10.0.3.17")
    check = check_tcp(probe)
    assert check.status == "fail"
    assert "within 1 s" in check.evidence
    assert "TCP 6379" in check.fix and "security group" in check.fix
    assert "VPC" in check.fix and "sg allow" in check.fix


def test_settings_warnings():
    assert check_settings(Probe(Settings(tls=True, insecure=True))).status == "warn"
    assert check_settings(Probe(Settings(ca_cert="/etc/hosts"))).status == "warn"
    serverless = Settings(host="demo-du95w6.serverless.aps1.cache.amazonaws.com", db=2)
    check = check_settings(Probe(serverless))
    assert check.status == "fail" and "REDIS_DB" in check.fix
    ok = check_settings(Probe(Settings(username="app")))
    assert ok.status == "ok" and "user app" in ok.evidence


def test_diagnose_reports_each_check_as_it_goes(redis_plain):
    seen = []
    report = diagnose(
        Settings(host=redis_plain.host, port=redis_plain.port), aws=None, on_check=seen.append
    )
    assert [c.name for c in seen] == [c.name for c in report.checks]
    assert report.passed and report.counts["ok"] == 8 and report.counts["skip"] == 4
