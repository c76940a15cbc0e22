"""The rooms' import contract (docs/layout.md): every arrow runs one way, and no circle.

Read from the source with `ast` (every import, also those inside functions), as import-linter
reads a layered contract: a room may import only itself and the rooms listed before it.
"""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Bottom to top. flags/ turns values into the rooms' configs and checks them against what the
# rooms load, and prints the stages' commands, so it sits above them, just under run.py.
LAYERS = ("data", "tf2", "checkpoints", "stages", "flags", "run", "bench")
LIBRARY = ("data", "tf2", "checkpoints", "stages")  # never read absl flags


def _modules():
    """{dotted module name: path} of the project's own source (tests excluded)."""
    found = {"run": REPO / "run.py"}
    for room in LAYERS:
        for path in sorted((REPO / room).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path):
    """The dotted names `path` imports (`from a import b` gives a.b when that is a module)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def _room(module):
    return module.split(".")[0]


def _graph():
    """{module: set of our modules it imports}."""
    modules = _modules()
    return {name: {imported for imported in _imports(path) if imported in modules
                   and imported != name}
            for name, path in modules.items()}


def forbidden_arrows(graph):
    """[(importer, imported)] where a room imports a room above it."""
    rank = {room: i for i, room in enumerate(LAYERS)}
    return sorted((a, b) for a, targets in graph.items() for b in targets
                  if rank[_room(b)] > rank[_room(a)])


def circles(graph):
    """Module cycles, each as a list of names (Tarjan's strongly connected components)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_room_imports_a_room_above_it():
    assert forbidden_arrows(_graph()) == []


def test_no_import_circle():
    assert circles(_graph()) == []


@pytest.mark.parametrize("room", LIBRARY)
def test_library_rooms_never_read_absl_flags(room):
    modules = _modules()
    readers = [name for name in modules if _room(name) == room
               and any(n in ("absl.flags", "flags") or _room(n) == "flags"
                       for n in _imports(modules[name]))]
    assert readers == []


def test_the_checks_find_what_they_look_for():
    """The oracle: a made-up graph with one arrow up and one circle is caught."""
    graph = {"tf2.model": {"stages.loop"}, "stages.loop": {"tf2.model"},
             "data.augment": set(), "checkpoints.export": {"tf2.model"}}
    assert forbidden_arrows(graph) == [("tf2.model", "stages.loop")]
    assert circles(graph) == [["stages.loop", "tf2.model"]]
    assert circles({"a": {"b"}, "b": set()}) == []
    # The reader sees imports inside functions too (run.py imports stages.evaluate in main).
    assert {"stages", "stages.evaluate", "flags.checks"} <= _graph()["run"]
