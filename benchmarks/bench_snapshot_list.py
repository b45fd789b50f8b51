"""`closeup-ops snapshot list --json` vs `aws elasticache describe-snapshots` (the AWS CLI in a
venv of its own), both against the same moto_server on loopback, in the same run.

Target (issue 4): closeup-ops median <= 0.7x the AWS CLI's median wall time.
Checks the answers agree (same snapshot names), and that `closeup-ops --help` still imports
no boto3/botocore (the AWS path imports botocore only inside the command).

    .venv/bin/python benchmarks/bench_snapshot_list.py [--rounds 15] [--snapshots 20]

The AWS CLI (v1, from PyPI) is installed on first use into benchmarks/.work/awscli-venv
(gitignored): `python3 -m venv benchmarks/.work/awscli-venv` then `pip install awscli` in it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from common import VENV_BIN, WORK, clean_env, interleaved, median_ms

AWSCLI_VENV = WORK / "awscli-venv"
AWS = AWSCLI_VENV / "bin" / "aws"


def ensure_awscli() -> None:
    if AWS.exists():
        return
    subprocess.run(["python3", "-m", "venv", str(AWSCLI_VENV)], check=True)
    subprocess.run([str(AWSCLI_VENV / "bin" / "pip"), "install", "-q", "awscli"], check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("moto_server did not start") from None
            time.sleep(0.1)


def seed(url: str, count: int) -> None:
    import boto3

    ec = boto3.client("elasticache", endpoint_url=url, region_name="us-east-1")
    ec.create_replication_group(
        ReplicationGroupId="demo",
        ReplicationGroupDescription="bench",
        Engine="redis",
        CacheNodeType="cache.t4g.small",
    )
    for i in range(count):
        ec.create_snapshot(ReplicationGroupId="demo", SnapshotName=f"demo-snap-{i:03d}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--snapshots", type=int, default=20)
    args = parser.parse_args()
    ensure_awscli()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=url,
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
    )
    env = {k: v for k, v in env.items() if k not in ("AWS_PROFILE", "AWS_REGION")}
    proc = start_moto(port)
    try:
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        seed(url, args.snapshots)
        tool = [str(VENV_BIN / "closeup-ops"), "snapshot", "list", "--json"]
        anchor = [str(AWS), "elasticache", "describe-snapshots", "--output", "json"]
        ours = subprocess.run(tool, capture_output=True, text=True, env=env, check=True)
        theirs = subprocess.run(anchor, capture_output=True, text=True, env=env, check=True)
        names = sorted(s["name"] for s in json.loads(ours.stdout))
        expected = sorted(s["SnapshotName"] for s in json.loads(theirs.stdout)["Snapshots"])
        assert names == expected and len(names) == args.snapshots, (names, expected)
        times = interleaved(
            {
                "closeup-ops snapshot list --json": tool,
                "aws elasticache describe-snapshots": anchor,
            },
            rounds=args.rounds,
            env=env,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    help_imports = subprocess.run(
        [str(VENV_BIN / "python"), "-X", "importtime", "-c", "import closeup_ops.cli"],
        capture_output=True,
        text=True,
    ).stderr
    heavy = [
        m for m in ("boto3", "botocore") if f" {m}\n" in help_imports or f" {m}." in help_imports
    ]
    ours_ms = median_ms(times["closeup-ops snapshot list --json"])
    aws_ms = median_ms(times["aws elasticache describe-snapshots"])
    ratio = ours_ms / aws_ms
    print(f"snapshots listed: {len(names)} (answers agree)")
    for name, values in times.items():
        print(
            f"{name:40s} median {median_ms(values):7.1f} ms  min {min(values) * 1000:7.1f} ms  "
            f"(n={len(values)})"
        )
    print(
        f"ratio closeup-ops / aws cli: {ratio:.2f} (target <= 0.70) -> "
        f"{'PASS' if ratio <= 0.7 else 'FAIL'}"
    )
    print(f"boto3/botocore imported by `import closeup_ops.cli`: {heavy or 'none'}")
    return 0 if ratio <= 0.7 and not heavy else 1


if __name__ == "__main__":
    sys.exit(main())
