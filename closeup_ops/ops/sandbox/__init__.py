"""A local stand-in for the whole stack (run.py): redis-server processes, a serverless
stand-in, moto with the serverless APIs, a bastion; state.py records what runs."""

from closeup_ops.ops.sandbox.run import down, seed_keys, up
from closeup_ops.ops.sandbox.state import (
    ProcessStatus,
    Sandbox,
    SandboxProcess,
    load_state,
    state_dir,
    status,
)

__all__ = [
    "ProcessStatus",
    "Sandbox",
    "SandboxProcess",
    "down",
    "load_state",
    "seed_keys",
    "state_dir",
    "status",
    "up",
]
