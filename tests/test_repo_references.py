"""What a clone of the repository reads must be in it: no file points to a path beside the repository, and every
project file docs/architecture.md names exists (so the page follows the code when a file moves)."""
import os
import re

from import_closure import REPO

SKIPPED_DIRS = {".git", ".venv", ".dvc", "data", "__pycache__", ".pytest_cache"}
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".cfg", ".txt", ".html", ".sh"}
OUTSIDE = re.compile(r"\.\./shared\b")  # the folder beside the repository the project was started from
TOP_LEVEL = ("pipeline/", "train/", "annotators/", "shardio/", "tests/", "docs/", "benchmarks/", "scripts/")
NAMED = re.compile(r"`([A-Za-z0-9_./-]+)`")


def _text_files():
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        for name in files:
            path = os.path.join(root, name)
            if os.path.splitext(name)[1] in TEXT_SUFFIXES or name in ("Makefile", "run"):
                yield path


def test_no_file_points_beside_the_repository():
    offending = []
    for path in _text_files():
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                if OUTSIDE.search(line):
                    offending.append(f"{os.path.relpath(path, REPO)}:{number}: {line.strip()}")
    assert not offending, "cite docs/architecture.md or the paper (title, arXiv id) instead:\n" + "\n".join(offending)


def test_every_project_file_the_architecture_page_names_exists():
    page = (REPO / "docs" / "architecture.md").read_text()
    named = {m for m in NAMED.findall(page) if m.startswith(TOP_LEVEL) or m in ("dvc.yaml", "params.yaml", "Makefile")}
    assert len(named) > 40  # the stage table alone names more: a pattern that stopped matching would pass vacuously
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing, f"docs/architecture.md names files that do not exist (update the page): {missing}"
