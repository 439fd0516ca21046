"""Layers point one way: pipeline -> train -> annotators -> shardio. A lower floor never imports a higher one."""
import pytest

from import_closure import REPO, imported_modules

FLOORS = ["pipeline", "train", "annotators", "shardio"]  # top to bottom


@pytest.mark.parametrize("floor", FLOORS[1:])
def test_a_floor_imports_nothing_above_it(floor):
    above = FLOORS[: FLOORS.index(floor)]
    offending = []
    for path in sorted((REPO / floor).rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for imported in imported_modules(path, module, registry_names=True):
            if imported.split(".")[0] in above:
                offending.append(f"{path.relative_to(REPO)} imports {imported}")
    assert not offending, "\n".join(offending)
