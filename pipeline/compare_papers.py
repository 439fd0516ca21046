"""The published tables `pipeline compare` sets a run's numbers beside, gathered from the registry: each family
declares the tables that measured it (`Declaration.published`, train/families/base.py `PaperTable`), in its own
folder with each number's row and column."""
from train.families import REGISTRY, declaration
from train.families.base import PaperTable

# table id -> (model, table), in the registry's order
TABLES: dict[str, tuple[str, PaperTable]] = {
    table_id: (model, table) for model in REGISTRY for table_id, table in declaration(model).published.items()}
# (table id, condition, metric key) -> the printed number
NUMBERS: dict[tuple[str, str, str], float] = {
    (table_id, condition, metric): value for table_id, (_, table) in TABLES.items()
    for (condition, metric), value in table.numbers.items()}


def published(dataset: str, model: str, condition: str, metric: str) -> list[tuple[PaperTable, float]]:
    """(table, number) of each published number for `model`'s `metric` under `condition` on profile `dataset`."""
    return [(table, table.numbers[condition, metric]) for owner, table in TABLES.values()
            if owner == model and table.dataset == dataset and (condition, metric) in table.numbers]
