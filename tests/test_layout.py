"""The package's shape (ENGINEERING.md): imports go one way, commands -> ops -> connect ->
settings/errors/output, and no module imports itself back through another. Walks the source
with ast, lazy imports inside functions included: a cycle that only bites at run time is
still a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import closeup_ops

ROOT = Path(closeup_ops.__file__).parent

# Higher may import lower, never the reverse. Modules not listed (cli, options, local, ...)
# are only checked for cycles.
LAYERS = {
    "commands": 3,
    "ops": 2,
    "connect": 1,
    "errors": 0,
    "settings": 0,
    "output": 0,
    "audit": 0,
    "endpoint": 0,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import submodule` depends on the submodule; `from mod import name`
            # on the module. A package's __init__ that runs first is not an edge.
            subs = {f"{mod}.{a.name}" for a in node.names} & modules
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(mod)
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {
        name: {m for m in imports_of(path, name, set(files)) if m in files and m != name}
        for name, path in files.items()
    }


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g[n]):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def upward(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in g.items():
        for dst in targets:
            a, b = layer(src), layer(dst)
            if a is not None and b is not None and b > a:
                bad.append(f"{src} -> {dst}")
    return sorted(bad)


def test_no_import_cycle():
    assert find_cycle(graph()) is None


def test_imports_go_one_way():
    assert upward(graph()) == []


def test_the_checks_can_fail():
    # the walker itself: a made-up cycle and a made-up upward import are found
    g = {"closeup_ops.a": {"closeup_ops.b"}, "closeup_ops.b": {"closeup_ops.a"}}
    assert find_cycle(g) == ["closeup_ops.a", "closeup_ops.b", "closeup_ops.a"]
    g = {"closeup_ops.connect.x": {"closeup_ops.ops.y"}, "closeup_ops.ops.y": set()}
    assert upward(g) == ["closeup_ops.connect.x -> closeup_ops.ops.y"]


def test_the_walker_sees_lazy_and_from_imports():
    g = graph()
    # a lazy import inside a function (errors' handler -> its redis mapper)
    assert "closeup_ops.errors.redis" in g["closeup_ops.errors"]
    # `from pkg import module`
    assert "closeup_ops.ops.failover.trigger" in g["closeup_ops.ops.failover.run"]


def test_ops_is_grouped_by_domain():
    # no two modules left in ops/ sharing a name prefix (keyspace_*, failover_*, ...)
    flat = [p.stem for p in (ROOT / "ops").glob("*.py") if p.stem != "__init__"]
    prefixes = [s.split("_")[0] for s in flat]
    assert sorted({p for p in prefixes if prefixes.count(p) > 1}) == []
