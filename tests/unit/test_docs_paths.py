"""The README and docs/ name only paths that exist, and every relative link resolves.

A path is a token in inline code, a fenced code block or a link that starts with one of
the repository's top-level entries (``src/``, ``charts/``, ``tests/``, ``skaffold.yaml``,
...). A placeholder (``localcluster/go/<component>/``) is checked up to the directory
before it; ``path::test_name`` as the file; a path .gitignore covers (built or fetched:
``charts/dagma/charts/``, ``extra-ca.pem``) is allowed to be absent. A link to a Markdown
file with ``#anchor`` must name one of its headings, as GitHub spells them.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Fixed on purpose: a doc naming localcluster/... is checked even before localcluster/ exists.
TOP_LEVEL_DIRS = (
    "src", "charts", "values", "tests", "docs", "localcluster", "benchmarks", "images", ".ci",
)  # fmt: skip
TOP_LEVEL_FILES = (
    "skaffold.yaml", "Makefile", "pyproject.toml", "uv.lock", "README.md", "LICENSE",
    "CHANGELOG.md",
)  # fmt: skip
PLACEHOLDER = re.compile(r"[<*…{$\[]")
TOKEN_SEPARATORS = re.compile(r"[\s=,;()'\"|`]+")
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def doc_files(root: Path = ROOT) -> list[Path]:
    """The pages checked: the README, docs/*.md and the images' READMEs."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md")),
            *sorted((root / "images").glob("*/README.md"))]  # fmt: skip


def _lines(text: str) -> list[tuple[int, str, bool]]:
    """(line number, line, inside a fenced code block) for each line of ``text``."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        out.append((number, line, fenced))
    return out


def _repo_path(token: str) -> str | None:
    """``token`` as a repository path to check, or None when it names none."""
    token = token.split("::", 1)[0].rstrip(".:")
    first = token.split("/", 1)[0]
    if not (token in TOP_LEVEL_FILES or (first in TOP_LEVEL_DIRS and "/" in token)):
        return None
    if placeholder := PLACEHOLDER.search(token):
        token = token[: placeholder.start()].rsplit("/", 1)[0] + "/"
    return token


def named_paths(text: str) -> list[tuple[int, str]]:
    """(line, path) for every repository path in inline code or code blocks of ``text``."""
    found = []
    for number, line, fenced in _lines(text):
        spans = [line] if fenced else INLINE_CODE.findall(line)
        for span in spans:
            for token in TOKEN_SEPARATORS.split(span):
                if path := _repo_path(token):
                    found.append((number, path))
    return found


def relative_links(text: str) -> list[tuple[int, str]]:
    """(line, target) for every link of ``text`` that is not a URL."""
    return [
        (number, target)
        for number, line, fenced in _lines(text)
        if not fenced
        for target in LINK.findall(line)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


def _ignore_patterns(root: Path) -> list[str]:
    gitignore = root / ".gitignore"
    lines = gitignore.read_text().splitlines() if gitignore.exists() else []
    return [p.strip().strip("/") for p in lines if p.strip() and not p.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .gitignore (``patterns``) covers ``path``: it is built or fetched, not kept."""
    parts = path.strip("/").split("/")
    for pattern in patterns:
        anchored = "/" in pattern and not pattern.startswith("**/")
        pattern = pattern.removeprefix("**/")
        starts = [0] if anchored else range(len(parts))
        for start in starts:
            for end in range(start + 1, len(parts) + 1):
                if fnmatch.fnmatchcase("/".join(parts[start:end]), pattern):
                    return True
    return False


def anchors(text: str) -> set[str]:
    """The ``#anchors`` GitHub gives the headings of ``text``."""
    slugs: set[str] = set()
    for _, line, fenced in _lines(text):
        if fenced or not (match := HEADING.match(line)):
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(2))  # a link's text
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        unique, n = slug, 0
        while unique in slugs:
            n += 1
            unique = f"{slug}-{n}"
        slugs.add(unique)
    return slugs


def missing_paths(doc: Path, root: Path = ROOT) -> list[str]:
    """``doc:line: path`` for each path ``doc`` names that the repository lacks."""
    patterns = _ignore_patterns(root)
    return [
        f"{doc.relative_to(root)}:{number}: {path}"
        for number, path in named_paths(doc.read_text())
        if not (root / path).exists() and not ignored(path, patterns)
    ]


def broken_links(doc: Path, root: Path = ROOT) -> list[str]:
    """``doc:line: target (why)`` for each relative link of ``doc`` that does not resolve."""
    broken = []
    for number, target in relative_links(doc.read_text()):
        file_part, _, anchor = target.partition("#")
        resolved = (doc.parent / file_part).resolve() if file_part else doc
        where = f"{doc.relative_to(root)}:{number}: {target}"
        if not resolved.exists():
            broken.append(f"{where} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text()):
            broken.append(f"{where} (no heading with that anchor in {resolved.name})")
    return broken


def test_every_path_the_docs_name_exists() -> None:
    missing = [line for doc in doc_files() for line in missing_paths(doc)]
    assert not missing, "paths named in the docs that do not exist:\n" + "\n".join(missing)


def test_every_relative_link_in_the_docs_resolves() -> None:
    broken = [line for doc in doc_files() for line in broken_links(doc)]
    assert not broken, "links that do not resolve:\n" + "\n".join(broken)


def test_the_pages_are_all_there_and_name_paths() -> None:
    names = {str(doc.relative_to(ROOT)) for doc in doc_files()}
    for page in ("usage", "configuration", "kubernetes", "troubleshooting", "performance",
                 "testing", "reliability"):  # fmt: skip
        assert f"docs/{page}.md" in names
        assert f"docs/{page}.md" in {t for _, t in relative_links((ROOT / "README.md").read_text())}
    assert len([p for doc in doc_files() for p in named_paths(doc.read_text())]) > 100


def test_the_scan_flags_a_missing_path_and_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("# built\ncharts/dagma/charts/\n**/extra-ca.pem\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title: `x`\n\n## Two words\n")
    doc = tmp_path / "README.md"
    doc.write_text(
        "Uses `src/` and `src/gone.py::test_x`, `localcluster/go/<name>/`,\n"
        "`charts/dagma/charts/`, `images/user_code/extra-ca.pem`, `make -f Makefile`, not `x.y`.\n"
        "```bash\nhelm install dagma charts/dagma -f values/kind.yaml\n```\n"
        "[ok](docs/a.md#two-words) [ok](docs/a.md#title-x) [gone](docs/b.md)"
        " [anchor](docs/a.md#nope) [web](https://example.com/x)\n"
    )  # fmt: skip
    assert missing_paths(doc, tmp_path) == [
        "README.md:1: src/gone.py",
        "README.md:1: localcluster/go/",
        "README.md:2: Makefile",
        "README.md:4: charts/dagma",
        "README.md:4: values/kind.yaml",
    ]
    assert broken_links(doc, tmp_path) == [
        "README.md:6: docs/b.md (no such file)",
        "README.md:6: docs/a.md#nope (no heading with that anchor in a.md)",
    ]
