"""What a newcomer reads works as written: links resolve, examples match, variables agree."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from keel.temporal import SEARCH_ATTRIBUTES, cli_type
from tests.metrics import EXPORTED

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _prose(text: str) -> str:
    """The text without fenced code blocks: what a Markdown renderer turns into links."""
    return _FENCE.sub("", text)


def _anchors(path: Path) -> set[str]:
    """The heading anchors GitHub gives a Markdown file (duplicates get -1, -2, ...)."""
    seen: dict[str, int] = {}
    anchors: set[str] = set()
    for heading in _HEADING.findall(_prose(path.read_text(encoding="utf-8"))):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _relative_links(path: Path) -> list[str]:
    # A code span is no link, but may be a link's text: [`examples/`](../examples/).
    prose = _CODE_SPAN.sub("code", _prose(path.read_text(encoding="utf-8")))
    return [t for t in _LINK.findall(prose) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def _parent_paths(path: Path) -> list[str]:
    """Code spans written as a path up from the doc (`../shared/x.md`): links in all but name."""
    spans = _CODE_SPAN.findall(_prose(path.read_text(encoding="utf-8")))
    return [s.strip("`") for s in spans if s.startswith("`../")]


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```(?:bash|sh|console)\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_of_the_repository(doc: Path) -> None:
    broken = []
    for target in _relative_links(doc) + _parent_paths(doc):
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.is_relative_to(ROOT) or not dest.exists():
            broken.append(f"{target}: no such file in the repository")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: {dest.name} has no heading #{anchor}")
    assert not broken, f"{doc.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_the_link_checker_sees_links_and_anchors(tmp_path: Path) -> None:
    # Guards the test above against passing because it finds nothing.
    (tmp_path / "a.md").write_text(
        "# Where Keel finds it\n## Environment variables: `${VAR}`\n## Top\n## Top\n"
        "See [b](b.md#x), [`code`](c.md), `[not](a link)` and [web](https://example.com).\n"
        "```\n[in code](nowhere.md)\n# not a heading\n```\n"
    )
    assert _relative_links(tmp_path / "a.md") == ["b.md#x", "c.md"]
    (tmp_path / "r.md").write_text("- `../shared/DESIGN.md`: the architecture\n")
    assert _parent_paths(tmp_path / "r.md") == ["../shared/DESIGN.md"]
    assert _anchors(tmp_path / "a.md") == {
        "where-keel-finds-it",
        "environment-variables-var",
        "top",
        "top-1",
    }


def test_the_readme_links_the_architecture_for_contributors() -> None:
    assert "docs/architecture.md" in _relative_links(ROOT / "README.md")


def test_the_formation_reference_shows_the_example_file_as_it_is() -> None:
    doc = (ROOT / "docs" / "formation.md").read_text()
    start = doc.index("[`examples/formation.yaml`](../examples/formation.yaml):")
    shown = re.compile(r"```yaml\n(.*?)```", re.DOTALL).search(doc, start)
    assert shown is not None
    lines = (ROOT / "examples" / "formation.yaml").read_text().splitlines(keepends=True)
    header, body = lines[:2], "".join(lines[2:])  # the file's own two comment lines
    assert all(line.startswith("#") for line in header)
    assert shown.group(1) == body


def test_the_deploy_doc_uses_the_variables_env_example_sets() -> None:
    env = _env_file(ROOT / "deploy" / "env.example")
    doc = (ROOT / "docs" / "deploy.md").read_text()
    shell = "\n".join(_bash_blocks(doc))
    assert "cp deploy/env.example .env" in shell and "$KEEL_ADMIN_KEYS" in shell
    # Every variable the commands read, or their comments tell the reader to set.
    named = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", shell))
    named |= set(re.findall(r"\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)\b", shell))
    assert named, "no variables found in the deploy doc's commands"
    assert named <= env.keys(), f"not in deploy/env.example: {sorted(named - env.keys())}"
    # The doc sources .env into the shell for curl: the file must read as shell, too.
    sourced = subprocess.run(
        ["sh", "-c", '. ./deploy/env.example && printf %s "$KEEL_ADMIN_KEYS"'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert sourced.stdout == env["KEEL_ADMIN_KEYS"] != ""
    # Compose refuses to start without these, so the example must set them.
    compose = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)(?::?\?[^}]*)?\}", compose))
    assert required <= env.keys(), f"not in deploy/env.example: {sorted(required - env.keys())}"


def test_the_deploy_doc_creates_every_search_attribute() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    command = next(b for b in _bash_blocks(doc) if "search-attribute create" in b)
    pairs = dict(re.findall(r"--name (\w+) --type (\w+)", command))
    assert pairs == {key.name: cli_type(key) for key in SEARCH_ATTRIBUTES}


def test_the_example_formations_name_their_tools_package() -> None:
    for name in ("formation.yaml", "tools.yaml"):
        data = yaml.safe_load((ROOT / "examples" / name).read_text())
        assert data["python_tools"] == ["myapp.tools"]
    assert (ROOT / "examples" / "myapp" / "tools.py").is_file()


_METRIC_NAME = re.compile(r"\b((?:keel|temporal)_[a-z0-9_]+)\b")
_SERIES_SUFFIXES = ("_bucket", "_count", "_sum")


def _dashboard() -> dict[str, object]:
    doc = (ROOT / "docs" / "observability.md").read_text()
    shown = re.compile(r"```json\n(.*?)```", re.DOTALL).search(
        doc, doc.index("## Grafana dashboard")
    )
    assert shown is not None, "no dashboard JSON under '## Grafana dashboard'"
    dashboard: dict[str, object] = json.loads(shown.group(1))
    return dashboard


def _queried_metrics(dashboard: dict[str, object]) -> set[str]:
    exprs = re.findall(r'"(?:expr|query)":\s*"((?:[^"\\]|\\.)*)"', json.dumps(dashboard))
    names = {name for expr in exprs for name in _METRIC_NAME.findall(expr)}
    return {next((n.removesuffix(s) for s in _SERIES_SUFFIXES if n.endswith(s)), n) for n in names}


def test_the_dashboard_queries_only_metrics_keel_and_the_sdk_export() -> None:
    dashboard = _dashboard()
    queried = _queried_metrics(dashboard)
    assert queried - EXPORTED == set(), f"not exported: {sorted(queried - EXPORTED)}"
    # What the dashboard is for: turn latency, tokens, cost, approvals waiting, failures.
    assert {
        "keel_turn_latency",
        "keel_tokens_total",
        "keel_cost_usd_total",
        "keel_sessions_awaiting_approval",
        "temporal_activity_execution_failed",
    } <= queried
    panels = dashboard["panels"]
    assert isinstance(panels, list) and all(p["targets"] for p in panels)


def test_the_metrics_reference_lists_every_exported_metric() -> None:
    doc = (ROOT / "docs" / "observability.md").read_text()
    table = doc[doc.index("## Metrics") : doc.index("## Grafana dashboard")]
    assert {m for m in EXPORTED if f"`{m}`" not in table} == set()
