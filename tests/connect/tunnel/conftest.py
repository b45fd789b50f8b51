"""The `vpc` fixture: a VPC in network namespaces, made once for the session and removed
after it (layout and reasons in tests/helpers/netns.py). Without root or netns it skips,
saying why - unless CLOSEUP_OPS_REQUIRE_NETNS=1 (CI), where a missing netns FAILS."""

from __future__ import annotations

import os

import pytest
from helpers.netns import (
    Vpc,
    build_demo_cluster,
    build_network,
    build_serverless,
    build_standalone_and_plain_cluster,
    remove,
    require_netns,
    start_bastion,
)


@pytest.fixture(scope="session")
def vpc(tmp_path_factory):
    require_netns()
    pid = os.getpid()
    env = Vpc(vpc=f"cuo5vpc{pid}", laptop=f"cuo5lap{pid}", workdir=tmp_path_factory.mktemp("vpc"))
    try:
        build_network(env)
        build_standalone_and_plain_cluster(env)
        build_demo_cluster(env)
        build_serverless(env)
        start_bastion(env)
        yield env
    finally:
        remove(env)
