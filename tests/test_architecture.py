"""Import boundaries, read statically with ast (nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_library_never_imports_prefect_or_flows() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "bias_correction").rglob("*.py")
                 if _imports(p) & {"prefect", "flows"}]
    assert offenders == []


def test_no_unsafe_torch_load() -> None:
    for p in (ROOT / "bias_correction").rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "load" \
                    and getattr(getattr(node.func, "value", None), "id", "") == "torch":
                kws = {k.arg: k.value for k in node.keywords}
                assert "weights_only" in kws and getattr(kws["weights_only"], "value", None) is True, f"{p}:{node.lineno}"


def test_only_the_sources_talk_to_the_network() -> None:
    net = {"requests", "s3fs", "boto3", "botocore", "urllib3", "aiohttp", "httpx"}
    users = {str(p.relative_to(ROOT)) for p in (ROOT / "bias_correction").rglob("*.py")
             if _imports(p) & net and "testing" not in p.parts}
    assert users and all(u.startswith("bias_correction/sources/") for u in users), users


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """Edges module -> imported bias_correction module, from every import statement (lazy ones too)."""
    files = {_module_name(p): p for p in (ROOT / "bias_correction").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                while t and t not in files:  # `import a.b.c` names a, a.b and a.b.c: keep the deepest module
                    t = t.rpartition(".")[0]
                if t and t != name:
                    edges.add(t)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_in_the_library() -> None:
    assert _cycles(_import_graph()) == []


def test_correction_never_imports_training() -> None:
    graph = _import_graph()
    bad = {m: sorted(t for t in ts if t.startswith("bias_correction.training"))
           for m, ts in graph.items() if m.startswith("bias_correction.correction")}
    assert {m: ts for m, ts in bad.items() if ts} == {}


def test_no_library_module_over_600_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "bias_correction").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 600}
    assert long == {}


def test_model_ids_are_named_only_in_the_zoo() -> None:
    """The registry is the one list of model names: no other module spells a model id as a string literal."""
    from bias_correction import zoo

    ids = set(zoo.ids())
    assert ids
    hits = []
    for folder in ("bias_correction", "flows", "benchmarks"):
        for p in (ROOT / folder).rglob("*.py"):
            if p == ROOT / "bias_correction" / "zoo.py":
                continue
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in ids:
                    hits.append(f"{p.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert hits == []


def test_input_names_are_declared_only_in_the_input_registry() -> None:
    """Inputs are declared once (``bias_correction/inputs.py``); no other module branches on an input's
    name. Exempt: the HYCOM product table, the one place that knows upstream variable names (HYCOM
    calls its sea-surface elevation ``surf_el`` too), and ``testing/``, whose stand-ins play upstream."""
    from bias_correction.inputs import AUX_INPUTS

    names = set(AUX_INPUTS)
    exempt = {ROOT / "bias_correction" / "inputs.py", ROOT / "bias_correction" / "sources" / "hycom" / "products.py"}
    hits = []
    for folder in ("bias_correction", "flows", "benchmarks"):
        for p in (ROOT / folder).rglob("*.py"):
            if p in exempt or "testing" in p.relative_to(ROOT).parts:
                continue
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                    hits.append(f"{p.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert hits == []
