"""ARCHITECTURE.md's promises, checked: the key layout it shows, layering, module size."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from app.domain.keys import LAYOUT

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
MODULES = sorted(p for p in APP.rglob("*.py"))


def rendered_layout() -> str:
    rows = ["| kind | key | type | holds |", "|---|---|---|---|"]
    for kind, spec in LAYOUT.items():
        rows.append(f"| {kind} | `{{<prefix>}}:{spec.pattern}` | {spec.type} | {spec.holds} |")
    return "\n".join(rows)


def test_architecture_key_layout_matches_the_code():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    shown = re.search(r"<!-- key-layout:start -->\n(.*?)\n<!-- key-layout:end -->", text, re.S)
    assert shown is not None, "ARCHITECTURE.md lost its key-layout markers"
    assert shown.group(1) == rendered_layout()


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


# (modules, prefixes of imports they must not make): lower layers never reach up.
FORBIDDEN = [
    ("app/domain", ("flask", "app.api", "app.services", "app.auth", "app.ratelimit")),
    ("app/config", ("flask", "app.api", "app.services", "redis")),
    ("app/schemas", ("app.api", "app.services")),
    ("app/redis_client", ("flask", "app.api")),
]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_flow_down(path):
    relative = str(path.relative_to(ROOT))
    for prefix, banned in FORBIDDEN:
        if relative.startswith(prefix):
            bad = {n for n in imports_of(path) if n.startswith(banned)}
            assert not bad, f"{relative} imports {sorted(bad)} from a higher layer"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= 300, "split it: one job per module"


def test_no_comment_cites_a_document_outside_the_repo():
    offenders = [
        str(p.relative_to(ROOT))
        for p in [*MODULES, *APP.rglob("*.lua")]
        if "SPEC §" in p.read_text()
    ]
    assert offenders == []
