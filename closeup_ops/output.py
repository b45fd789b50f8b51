"""The one output layer: tables for people, JSON/NDJSON for machines, progress on stderr.

With --json only JSON goes to stdout. A table goes through rich when stdout is a terminal
(rich honours NO_COLOR); to a pipe or file it is plain aligned text, which is what grep and
awk want and keeps rich off the start-up path of `ping`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

STATE = {"json": False, "verbose": False}


def configure(json_mode: bool = False, verbose: bool = False) -> None:
    STATE["json"] = bool(json_mode)
    STATE["verbose"] = bool(verbose)


def json_mode() -> bool:
    return STATE["json"]


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float) and value != value:
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if type(value).__name__ == "Secret":
        return "******"
    return str(value)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(data), indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def ndjson(data: Any, stream: Any = None) -> None:
    (stream or sys.stdout).write(json.dumps(jsonable(data), separators=(",", ":")) + "\n")


def render(data: Any, human: Callable[[Any], None]) -> None:
    """--json: the data as one JSON document; else the command's human renderer."""
    if STATE["json"]:
        emit_json(data)
    else:
        human(data)


def _is_tty(stream: Any) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def fancy() -> bool:
    return _is_tty(sys.stdout) and os.environ.get("TERM") != "dumb"


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    title: str | None = None,
    right: Sequence[str] = (),
) -> None:
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    if fancy():
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title, title_justify="left", highlight=False)
        for col in columns:
            t.add_column(col, justify="right" if col in right else "left", overflow="fold")
        for row in cells:
            t.add_row(*row)
        Console().print(t)
        return
    if title:
        sys.stdout.write(title + "\n")
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    fmt = []
    for i, col in enumerate(columns):
        fmt.append((">" if col in right else "<") + str(widths[i]))
    lines = [columns] + cells
    for line in lines:
        text = "  ".join(format(v, f) for v, f in zip(line, fmt, strict=False)).rstrip()
        sys.stdout.write(text + "\n")
    sys.stdout.flush()


def fields_block(pairs: Sequence[tuple[str, Any]], title: str | None = None) -> None:
    """Key: value lines, aligned."""
    if title:
        sys.stdout.write(title + "\n")
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        sys.stdout.write(f"  {key.ljust(width)}  {'' if value is None else value}\n")
    sys.stdout.flush()


def line(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def info(text: str) -> None:
    """Progress and notes for people: stderr, so stdout stays clean for pipes and --json."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def warn(text: str) -> None:
    sys.stderr.write(f"closeup-ops: warning: {text}\n")
    sys.stderr.flush()


@contextmanager
def progress(label: str) -> Iterator[Callable[[str], None]]:
    """A spinner with status and elapsed time on a terminal; plain status lines otherwise.

    Yields `update(status)`.
    """
    start = time.monotonic()
    if _is_tty(sys.stderr) and not STATE["json"]:
        from rich.console import Console

        console = Console(stderr=True)
        with console.status(label) as status:

            def update(text: str) -> None:
                status.update(f"{label}: {text} ({time.monotonic() - start:.0f} s)")

            yield update
        return
    last: list[str] = [""]

    def update_plain(text: str) -> None:
        if text != last[0]:
            last[0] = text
            info(f"{label}: {text} ({time.monotonic() - start:.0f} s)")

    yield update_plain


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def stdout_gone() -> bool:
    """Whether the reader of our stdout went away (poll says POLLERR on a widowed pipe)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no fileno (captured), no poll
        return False


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush has nowhere to fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        pass
