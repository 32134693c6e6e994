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
