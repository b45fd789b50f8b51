"""README examples use only commands and flags that exist (docs that rot mislead at 3 a.m.)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
GROUPS = {"snapshot", "sg", "sandbox"}


def _examples() -> list[list[str]]:
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    out = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            found = re.match(r'(?:eval "\$\()?closeup-ops\s+(.*)', line)
            if not found:
                continue
            words = ["closeup-ops", *shlex.split(found.group(1).split(" -- ")[0].rstrip('")'))]
            if len(words) > 1 and not words[1].startswith("-"):
                out.append(words[1:])
    return out


def test_readme_has_an_example_per_command():
    from closeup_ops.cli import COMMANDS

    used = {words[0] for words in _examples()}
    assert set(COMMANDS) <= used, set(COMMANDS) - used


def test_readme_flags_exist(cli):
    problems = []
    for words in _examples():
        path = words[:2] if words[0] in GROUPS and len(words) > 1 else words[:1]
        r = cli(*path, "--help")
        if r.code != 0:
            problems.append(f"{' '.join(path)}: {r.err.strip()}")
            continue
        for flag in (w.split("=")[0] for w in words if w.startswith("--")):
            if flag not in r.out:
                problems.append(f"{' '.join(path)} has no {flag}")
    assert not problems, "\n".join(problems)
