"""The shape of the house: an acyclic core, imports at the top, plugins that import only the core."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

# Imported inside functions anywhere: optional or heavy dependencies a run may never need.
LAZY_DEPENDENCIES = ("matplotlib", "wandb", "submitit", "diffusers")
# Where the core itself is imported inside functions: the CLI's parsers stay light (`toolkit --help`),
# and `import toolkit` does not import torch.
LAZY_CORE_PLACES = ("toolkit/cli.py", "toolkit/commands/", "toolkit/__init__.py")


# The floors of the core, top to bottom: a module imports its own floor or the ones below, never one above.
# The configuration (gin -> Experiment, checked) sits below training and separation and imports nothing of them.
LAYERS = [
    ("entry points", ["toolkit", "toolkit.cli", "toolkit.commands"]),
    ("sweeps and launchers", ["toolkit.launch", "toolkit.sweep", "toolkit.sweep_report"]),
    ("a run", ["toolkit.runner", "toolkit.run_data", "toolkit.final_eval", "toolkit.validation", "toolkit.tracking",
               "toolkit.logger", "toolkit.listing"]),
    ("training and separation", ["toolkit.train", "toolkit.api", "toolkit.separate_files", "toolkit.evaluate",
                                 "toolkit.estimates", "toolkit.parts"]),
    ("configuration", ["toolkit.config", "toolkit.gin_check", "toolkit.experiment"]),
    ("the science and the data", ["toolkit.separate", "toolkit.model", "toolkit.diffusion", "toolkit.sampling",
                                  "toolkit.sampling_start", "toolkit.signal", "toolkit.ema", "toolkit.loader",
                                  "toolkit.checkpoint", "toolkit.data", "toolkit.segments", "toolkit.audio",
                                  "toolkit.precision"]),
    ("services", ["toolkit.registry", "toolkit.paths", "toolkit.io_utils", "toolkit.output_names", "toolkit.data_index"]),
    ("ground floor", ["toolkit.errors", "toolkit.contracts", "toolkit.settings", "toolkit.stop"]),
]


def layer_of(module: str) -> int | None:
    """Index in LAYERS of the longest prefix that names ``module`` (None: on no floor)."""
    found = [(len(prefix), i) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
             if module == prefix or module.startswith(prefix + ".")]
    return max(found)[1] if found else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [f"{module} ({LAYERS[layer_of(module)][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})"
            for module, deps in sorted(graph.items()) for dep in sorted(deps)
            if layer_of(module) is not None and layer_of(dep) is not None and layer_of(dep) < layer_of(module)]


PLUGINS_PACKAGE = "diffmsst_plugins"  # the import name of the plugins/ folder (pyproject's package-dir)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "plugins":
        parts[0] = PLUGINS_PACKAGE
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path):
    """``(target module, lineno, inside a function)`` for every import statement in ``path``."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    nested = {id(node) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
              for node in ast.walk(fn)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            yield target, node.lineno, id(node) in nested


def core_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in (REPO / "toolkit").rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for target, _, _ in imports(path):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target not in (name, "toolkit"):
                deps.add(target)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_core_import_graph_is_acyclic():
    cycle = find_cycle(core_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_function_level_imports_only_for_lazy_dependencies():
    bad = []
    for path in (REPO / "toolkit").rglob("*.py"):
        rel = path.relative_to(REPO).as_posix()
        for target, line, inside in imports(path):
            if not inside or target.split(".")[0] in LAZY_DEPENDENCIES:
                continue
            if rel.startswith(LAZY_CORE_PLACES):
                continue
            bad.append(f"{rel}:{line} imports {target} inside a function")
    assert not bad, "\n".join(sorted(set(bad)))


def test_plugins_import_the_core_never_another_plugin():
    bad = []
    for path in (REPO / "plugins").rglob("*.py"):
        me = module_name(path)
        package = me if path.name == "__init__.py" else me.rpartition(".")[0]
        for target, line, _ in imports(path):
            if not target.startswith(PLUGINS_PACKAGE + ".") or target == PLUGINS_PACKAGE:
                continue
            own = target.startswith(package + ".") or target == package
            if path.name == "__init__.py" and own:
                continue  # a plugin package composes its own modules
            if not me.startswith(target):
                bad.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_every_core_module_is_on_a_floor_and_imports_go_down():
    graph = core_graph()
    assert not [m for m in graph if layer_of(m) is None], "add the new module to a floor of LAYERS"
    assert len(LAYERS) <= 8
    bad = upward_imports(graph)
    assert not bad, "\n".join(bad)


def test_an_upward_import_is_found():
    assert upward_imports({"toolkit.experiment": {"toolkit.train", "toolkit.errors"}}) == [
        "toolkit.experiment (configuration) imports toolkit.train (training and separation)"]


def test_the_readme_reading_path_exists_and_stays_short():
    """README's reading path (one training step, one separation) names real files, under 2,500 lines in all."""
    import re

    text = (REPO / "README.md").read_text()
    path = text[text.index("**Reading path**"):].split("\n\n", 1)[0]
    files = re.findall(r"`((?:toolkit|plugins)/[\w/]+\.py)`", path)
    assert len(files) >= 10 and all((REPO / f).is_file() for f in files), files
    lines = sum(len((REPO / f).read_text().splitlines()) for f in files)
    assert lines <= 2500, f"the reading path is {lines} lines"


def test_every_package_is_installed_and_none_under_a_generic_name():
    """pyproject lists each package folder (toolkit/, plugins/ as diffmsst_plugins) and claims no top-level `plugins`."""
    import tomllib

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {module_name(p) for root in ("toolkit", "plugins") for p in (REPO / root).rglob("__init__.py")}
    assert set(setuptools["packages"]) == folders
    assert setuptools["package-dir"] == {PLUGINS_PACKAGE: "plugins"}
    assert not any(name == "plugins" or name.startswith("plugins.") for name in setuptools["packages"])
