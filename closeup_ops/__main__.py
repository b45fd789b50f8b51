from closeup_ops.cli import run

run()
