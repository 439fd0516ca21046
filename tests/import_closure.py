"""The project files a module needs: its imports (module level and inside functions), followed transitively
through the project's own packages, plus modules named in registries as "package.module:Class" strings."""
import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "annotators", "train", "shardio")
REGISTRY_STRING = re.compile(r"^((?:%s)(?:\.\w+)+):\w+$" % "|".join(PACKAGES))


def module_file(module: str) -> Path | None:
    """The source file of a project module (a package's __init__.py), or None if it is not ours."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_modules(path: Path, module: str, registry_names: bool) -> set[str]:
    """Project modules imported by one file; registry strings count only when `registry_names`."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif registry_names and isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = REGISTRY_STRING.match(node.value)
            if match:
                found.add(match[1])
    return {m for m in found if module_file(m)}


def closure(roots: list[str], registries: bool = False) -> set[Path]:
    """Every project file reachable from `roots` by imports (parent packages included)."""
    seen, todo = set(), list(roots)
    while todo:
        module = todo.pop()
        path = module_file(module)
        if path is None or path in seen:
            continue
        seen.add(path)
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        todo += parents + sorted(imported_modules(path, module, registries))
    return {p.relative_to(REPO) for p in seen if has_code(p)}


def has_code(path: Path) -> bool:
    """False for a file holding nothing but a docstring (most package __init__.py): it cannot change behaviour."""
    body = ast.parse(path.read_text()).body
    return not (len(body) <= 1 and all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body))
