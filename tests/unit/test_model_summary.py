"""The model summary of the registry: the CLI and the API show the same one."""

from vitrine.api.schemas import ModelSummary
from vitrine.classify.registry import SUMMARY_FIELDS, model_summary


def test_summary_fields_match_the_api_schema() -> None:
    assert tuple(ModelSummary.model_fields) == SUMMARY_FIELDS


def test_model_summary_keeps_known_columns_and_headline_metrics() -> None:
    row = {
        "id": 3,
        "field": "articleType",
        "version": "v3",
        "active": True,
        "blob_key": "models/3.npz",
        "metrics": {"all": {"accuracy": 0.9, "macro": {"f1": 0.8}}},
        "params": {"threshold": 0.5},
    }
    summary = model_summary(row)
    assert summary == {
        "id": 3,
        "field": "articleType",
        "version": "v3",
        "active": True,
        "accuracy": 0.9,
        "macro_f1": 0.8,
        "review_threshold": 0.5,
    }
    assert list(summary)[:4] == ["id", "field", "version", "active"]
    assert model_summary({"id": 1}) == {
        "id": 1,
        "accuracy": None,
        "macro_f1": None,
        "review_threshold": None,
    }
