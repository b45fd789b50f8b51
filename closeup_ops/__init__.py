"""closeup-ops: the operations CLI for an ElastiCache (Redis OSS / Valkey) cache."""

__version__ = "0.1.0"
