"""The package's shape: data flows one way, no import cycles, and the library never needs the
CLI (typer, rich, oodml_cli). Checked over every import statement, function-level ones too."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "oodml"

# Lowest first. A module may import only from its own layer or lower ones. The results schema
# sits below train: a training run writes the rows it defines and reports read them back.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("oodml", "oodml.errors", "oodml.fileio", "oodml.registry", "oodml.config",
                    "oodml.progress", "oodml.hub")),
    ("data", ("oodml.data",)),
    ("features", ("oodml.features",)),
    ("stats", ("oodml.stats",)),
    ("splits", ("oodml.splits",)),
    ("metrics", ("oodml.metrics",)),
    ("results", ("oodml.results",)),
    ("train", ("oodml.train",)),
    ("report", ("oodml.report",)),
    ("sweep", ("oodml.sweep",)),
]
ENTRY_POINT = "oodml.__main__"  # `python -m oodml`: the one module that imports the CLI


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int:
    best, depth = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > depth:
                best, depth = i, len(p)
    assert best >= 0, f"{module} is in no layer; add it to LAYERS"
    return best


def imports_of(path: Path, *, top_level_only: bool = False) -> set[str]:
    """The modules ``path`` imports (oodml has no relative imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def known(name: str, mods: dict[str, Path]) -> str | None:
    """The oodml module that ``name`` refers to (a module, or a name inside one)."""
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


def test_every_import_goes_down_the_layers() -> None:
    mods = modules()
    wrong = []
    for mod, path in mods.items():
        if mod == ENTRY_POINT:
            continue
        for name in imports_of(path):
            if name.split(".")[0] in ("typer", "rich", "oodml_cli"):
                wrong.append(f"{mod} imports {name} (the library must not need the CLI)")
            target = known(name, mods)
            if target and layer_of(target) > layer_of(mod):
                wrong.append(f"{mod} ({LAYERS[layer_of(mod)][0]}) imports {target} "
                             f"({LAYERS[layer_of(target)][0]})")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_no_import_cycles() -> None:
    """Imports form a DAG, function-level ones included: a lazy import that closes a cycle
    (two modules of one layer needing each other) still ties them into one."""
    mods = modules()
    graph = {
        m: {t for n in imports_of(p) if (t := known(n, mods)) and t != m}
        for m, p in mods.items()
    }
    # a package's __init__ importing its own submodules is how Python packages work
    for m in graph:
        graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(m: str, stack: list[str]) -> bool:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle.extend(stack[stack.index(t):] + [t] if t in stack else [m, t])
                return True
            if state.get(t) is None and visit(t, stack + [t]):
                return True
        state[m] = 2
        return False

    for m in sorted(graph):
        if state.get(m) is None and visit(m, [m]):
            break
    assert not cycle, " -> ".join(cycle)


def test_the_cli_is_a_top_level_package_listed_in_pyproject() -> None:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["package-dir"]["oodml_cli"] == "cli"
    wanted = {module_name(p.parent) for p in PACKAGE.rglob("__init__.py")} | {"oodml_cli"}
    assert set(cfg["packages"]) == wanted
    assert not (PACKAGE / "cli.py").exists() and not (PACKAGE / "commands").exists()


def test_the_python_api_never_imports_typer_rich_or_the_cli(tmp_path) -> None:
    """A ladder, a training run and a report through the Python API, in a fresh interpreter."""
    script = f"""
import sys
from pathlib import Path
import numpy as np
from oodml.stats.class_stats import ClassStats
from oodml.splits.ladder import run_procedure
from oodml.train.synthetic import make_synthetic_study
from oodml.train.spec import RunSpec
from oodml.train.loop import TrainConfig
from oodml.train.run import run_ladder
from oodml.report.build import build_report

rng = np.random.default_rng(0)
x = rng.normal(size=(120, 8)); labels = [f"c{{i // 6:02d}}" for i in range(120)]
stats = ClassStats.from_features(x, labels)
names = sorted(set(labels))
run_procedure(stats, names[:10], names[10:], procedure="greedy")
study = make_synthetic_study(Path({str(tmp_path)!r}) / "study")
spec = RunSpec(splitfile=str(study.splitfile), root=str(study.root), split_id=1, seed=0,
               loss="contrastive", results_dir={str(tmp_path / "res")!r},
               extractor=study.extractor, cache_dir=str(study.cache_dir),
               train=TrainConfig(epochs=1, batch_size=12, m=2))
run_ladder([spec])
build_report([{str(tmp_path / "res")!r}], {str(tmp_path / "report")!r})
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("typer", "rich", "oodml_cli"))
print("LOADED", bad)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LOADED []" in out.stdout, out.stdout


def test_cli_functions_stay_short() -> None:
    """The CLI only parses, builds a config, calls the library and prints: no function (its
    signature included) is over 60 lines."""
    long = []
    for path in sorted((REPO / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if node.end_lineno - start + 1 > 60:
                    long.append(f"{path.name}:{node.name} ({node.end_lineno - start + 1} lines)")
    assert not long, long
