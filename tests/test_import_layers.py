"""The rooms of DESIGN.md, read from the source with ``ast`` (no module is imported): no import cycle between the
packages of ``longrl``, Ray only in ``controller/``, no ``torch.distributed`` in ``algos/`` or ``rewards/``, and no
model-family name outside the family registries.

Every import that runs counts, at module level or inside a function; those under ``if TYPE_CHECKING:`` only name
types for annotations and never run, so they are left out. A package is a subpackage of ``longrl``; a top-level
module (``protocol.py``) is a node of its own.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "longrl"
MODEL_REGISTRY = PACKAGE / "models" / "registry.py"
FLOW_REGISTRY = PACKAGE / "flow" / "families.py"


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. longrl.data.dataset
    path: Path
    tree: ast.Module

    @property
    def room(self) -> str:
        """The package (or top-level module) of ``longrl`` this module belongs to."""
        return self.name.split(".")[1] if "." in self.name else self.name

    def where(self, node: ast.AST) -> str:
        return f"{self.path.relative_to(ROOT)}:{node.lineno}"


@cache
def modules() -> tuple[Module, ...]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append(Module(name, path, ast.parse(path.read_text(), str(path))))
    return tuple(found)


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def run_time_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Every node under ``node`` except the bodies of ``if TYPE_CHECKING:`` blocks (their ``else`` runs)."""
    for child in ast.iter_child_nodes(node):
        if _type_checking_only(child):
            for branch in child.orelse:
                yield branch
                yield from run_time_nodes(branch)
            continue
        yield child
        yield from run_time_nodes(child)


def imported_modules(module: Module) -> Iterator[tuple[ast.AST, str]]:
    """``(import node, dotted target)`` for each run-time import; ``from a import b`` yields ``a.b`` (a submodule or
    a name in ``a``: the room is the same)."""
    is_package = module.path.name == "__init__.py"
    for node in run_time_nodes(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.name.split(".")[: len(module.name.split(".")) - (node.level - is_package)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                yield node, f"{base}.{alias.name}"


def room_of(target: str) -> str | None:
    parts = target.split(".")
    return parts[1] if parts[0] == "longrl" and len(parts) > 1 else None


def room_edges() -> dict[tuple[str, str], list[str]]:
    """(importing room, imported room) -> the import sites, as file:line."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module in modules():
        for node, target in imported_modules(module):
            room = room_of(target)
            if room is not None and room != module.room and (site := module.where(node)) not in edges[module.room, room]:
                edges[module.room, room].append(site)
    return edges


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while (member := stack.pop()) != node:
                component.append(member)
            component.append(node)
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_walkers_see_function_level_imports_and_skip_type_checking_ones():
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from longrl.sft import x\nelse:\n"
              "    import longrl.trainer\ndef f():\n    from longrl.data.rows import QARow\n")
    module = Module("longrl.embeds.cache", PACKAGE / "embeds" / "cache.py", ast.parse(source))
    assert [target for _, target in imported_modules(module)] == [
        "typing.TYPE_CHECKING", "longrl.trainer", "longrl.data.rows.QARow"]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_packages():
    edges = room_edges()
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
    problems = []
    for component in strongly_connected(graph):
        lines = [f"cycle between {', '.join(component)}:"]
        for (source, target), sites in sorted(edges.items()):
            if source in component and target in component:
                lines.append(f"  {source} -> {target}: {', '.join(sites)}")
        problems.append("\n".join(lines))
    assert not problems, "\n".join(problems)


def _imports_anywhere(predicate) -> list[str]:
    return [f"{module.where(node)} imports {target}" for module in modules()
            for node, target in imported_modules(module) if predicate(module, target)]


def test_ray_is_imported_only_in_controller():
    found = _imports_anywhere(lambda module, target: module.room != "controller" and target.split(".")[0] == "ray")
    assert not found, "Ray outside longrl/controller/:\n" + "\n".join(found)


def test_no_torch_distributed_in_algos_or_rewards():
    def distributed(module: Module, target: str) -> bool:
        return module.room in ("algos", "rewards") and target.startswith("torch.distributed")

    found = _imports_anywhere(distributed)
    for module in modules():
        if module.room in ("algos", "rewards"):
            found += [f"{module.where(node)} uses torch.distributed" for node in run_time_nodes(module.tree)
                      if isinstance(node, ast.Attribute) and node.attr == "distributed"
                      and isinstance(node.value, ast.Name) and node.value.id == "torch"]
    assert not found, "torch.distributed in algos/ or rewards/:\n" + "\n".join(found)


# ----- model-family names --------------------------------------------------------------------------------------------


def _literal_strings(node: ast.AST) -> list[str]:
    return [item.value for item in ast.walk(node) if isinstance(item, ast.Constant) and isinstance(item.value, str)]


def _model_families() -> set[str]:
    """The families and checkpoint model types of ``BUILTIN_ADAPTERS`` (its keys and each entry's model types)."""
    for node in ast.walk(ast.parse(MODEL_REGISTRY.read_text())):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "BUILTIN_ADAPTERS":
            names = {key.value for key in node.value.keys}
            for entry in node.value.values:
                names.update(_literal_strings(entry.args[1]))
            return names
    raise AssertionError(f"{MODEL_REGISTRY} has no BUILTIN_ADAPTERS table")


def _class_family(path: Path) -> str | None:
    """The ``family = "<name>"`` a class of ``path`` declares, if any (the flow family files)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            for statement in node.body:
                if (isinstance(statement, ast.Assign) and [getattr(t, "id", None) for t in statement.targets] == [
                        "family"] and isinstance(statement.value, ast.Constant)):
                    return statement.value.value
    return None


def _flow_family_files() -> dict[Path, str]:
    """The modules the flow family registry imports its families from, with their family names."""
    files = {}
    for node in ast.walk(ast.parse(FLOW_REGISTRY.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("longrl.flow."):
            path = PACKAGE / "flow" / f"{node.module.rsplit('.', 1)[1]}.py"
            if (family := _class_family(path)) is not None:
                files[path] = family
    return files


@cache
def family_pattern() -> re.Pattern:
    """The families' names and model types, and the words of three letters or more in the family names (``qwen``,
    ``omni``, ``wan``), each as a whole word of an identifier or string (``WanTransformer`` and ``qwen2_5_vl`` match,
    ``want`` and ``sdpa`` do not)."""
    families = _model_families() | set(_flow_family_files().values())
    words = {word for family in families for word in re.findall(r"[a-z]{3,}", family)}
    # the model types of the table are words of their own: a family's root is enough to find them
    terms = sorted(families | words, key=len, reverse=True)
    return re.compile(r"(?<![a-z0-9])(" + "|".join(map(re.escape, terms)) + r")(?![a-z])")


def _words(text: str) -> str:
    """``text`` lower-cased with camel-case humps split (``Qwen2_5_VLForX`` -> ``qwen2_5_vl_for_x``)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", text).lower()


def _docstrings(tree: ast.Module) -> set[int]:
    nodes = [tree] + [node for node in ast.walk(tree)
                      if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    return {id(node.body[0].value) for node in nodes
            if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


def _names_in(module: Module) -> Iterator[tuple[ast.AST, str]]:
    """Each identifier and string literal of the code (docstrings are prose, not knowledge, and left out)."""
    docstrings = _docstrings(module.tree)
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Name):
            yield node, node.id
        elif isinstance(node, ast.Attribute):
            yield node, node.attr
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node, node.name
        elif isinstance(node, ast.arg):
            yield node, node.arg
        elif isinstance(node, ast.alias):
            yield node, node.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node, node.module
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node, node.value


# A dotted config key of another trainer's (Long-RL's ``data.is_omni``) in the upstream key tables: its vocabulary,
# translated there, not family knowledge of longrl's.
_FOREIGN_KEY = re.compile(r"[a-z_]+(\.[a-z0-9_]+)+")


def _foreign_key(module: Module, node: ast.AST, text: str) -> bool:
    return (module.path.parent.name == "config" and module.path.name.startswith("upstream")
            and isinstance(node, ast.Constant) and _FOREIGN_KEY.fullmatch(text) is not None)


def family_name_sites() -> list[str]:
    allowed = {FLOW_REGISTRY, *_flow_family_files()}
    sites = []
    for module in modules():
        if module.room == "models" or module.path in allowed:
            continue
        found = [(node.lineno, match.group(1), text) for node, text in _names_in(module)
                 if (match := family_pattern().search(_words(text))) and not _foreign_key(module, node, text)]
        sites += [f"{module.path.relative_to(ROOT)}:{line} {term!r} in {text[:60]!r}"
                  for line, term, text in sorted(set(found))]
    return sites


def test_family_pattern_finds_whole_words_only():
    pattern = family_pattern()
    assert [pattern.search(name).group(1) for name in ("qwen2_5_vl", "qwen2_5_omni", "vila", "sd3", "wan")] == [
        "qwen2_5_vl", "qwen2_5_omni", "vila", "sd3", "wan"]
    assert pattern.search(_words("Qwen2_5_VLForConditionalGeneration")).group(1) == "qwen2_5_vl"
    assert pattern.search(_words("WanTransformer3DModel")).group(1) == "wan"
    assert pattern.search(_words("SD3Transformer2DModel")).group(1) == "sd3"
    assert not [word for word in ("want", "swan", "sdpa", "vilab", "is_qwenlike") if pattern.search(_words(word))]


def test_family_names_only_in_the_family_registries():
    sites = family_name_sites()
    assert not sites, ("model-family names outside longrl/models/ and the flow family registry (add the knowledge to "
                       "the family's adapter instead):\n" + "\n".join(sites))
