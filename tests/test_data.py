import json

import pytest
from conftest import make_rows, write_csv

from edgetune.data.text import load_text_dataset
from edgetune.errors import InputError


def test_csv_string_labels_map_to_sorted_ids_and_split_is_stratified(tmp_path):
    path = write_csv(tmp_path / "d.csv", make_rows(100))
    ds = load_text_dataset(path, validation_fraction=0.2, seed=1)
    assert ds.label_names == ["negative", "positive"]
    assert len(ds.train) == 80 and len(ds.validation) == 20
    assert sorted(ds.validation["label"]).count(0) == 10  # stratified: 10 of each
    again = load_text_dataset(path, validation_fraction=0.2, seed=1)
    assert list(again.validation["text"]) == list(ds.validation["text"])  # seeded


def test_tsv_with_quotes_and_integer_labels(tmp_path):
    path = tmp_path / "d.tsv"
    lines = ["sentence\tlabel"] + [
        f'it \'s "{w}" film\t{i % 2}' for i, w in enumerate("abcdefghij" * 2)
    ]
    path.write_text("\n".join(lines) + "\n")
    ds = load_text_dataset(path)
    assert ds.label_names == ["0", "1"]
    assert any('"' in t for t in list(ds.train["text"]) + list(ds.validation["text"]))


def test_jsonl_and_parquet_and_column_override(tmp_path):
    rows = make_rows(40)
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps({"review": t, "stars": lab}) for t, lab in rows))
    ds = load_text_dataset(
        jsonl
    )  # 'review' is a known text name; the only other column is the label
    assert ds.num_labels == 2
    import datasets

    pq = tmp_path / "d.parquet"
    datasets.Dataset.from_dict(
        {"body": [t for t, _ in rows], "y": [lab for _, lab in rows], "id": list(range(40))}
    ).to_parquet(str(pq))
    with pytest.raises(InputError, match="no label column"):
        load_text_dataset(pq)
    assert load_text_dataset(pq, label_column="y").num_labels == 2


def test_folder_with_train_and_validation_files(tmp_path):
    write_csv(tmp_path / "train.csv", make_rows(30))
    write_csv(tmp_path / "validation.csv", make_rows(10, seed=3))
    ds = load_text_dataset(tmp_path)
    assert len(ds.train) == 30 and len(ds.validation) == 10


def test_folder_of_label_folders(tmp_path):
    for label in ("sport", "tech"):
        (tmp_path / label).mkdir()
        for i in range(10):
            (tmp_path / label / f"{i}.txt").write_text(f"{label} article number {i}")
    ds = load_text_dataset(tmp_path)
    assert ds.label_names == ["sport", "tech"]
    assert len(ds.train) + len(ds.validation) == 20


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        load_text_dataset(tmp_path / "nope.csv")


def test_empty_file(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(InputError, match="empty"):
        load_text_dataset(tmp_path / "e.csv")


def test_header_only(tmp_path):
    (tmp_path / "h.csv").write_text("text,label\n")
    with pytest.raises(InputError, match="no rows|empty"):
        load_text_dataset(tmp_path / "h.csv")


def test_no_text_column(tmp_path):
    write_csv(tmp_path / "n.csv", [(1, 0), (2, 1)] * 5, header=("a", "b"))
    with pytest.raises(InputError, match="no text column"):
        load_text_dataset(tmp_path / "n.csv")


def test_one_class(tmp_path):
    write_csv(tmp_path / "o.csv", [("good film", "pos")] * 10)
    with pytest.raises(InputError, match="only one class"):
        load_text_dataset(tmp_path / "o.csv")


def test_unknown_column_override(tmp_path):
    path = write_csv(tmp_path / "d.csv", make_rows(20))
    with pytest.raises(InputError, match="no column 'txt'"):
        load_text_dataset(path, text_column="txt")


def test_hub_id_that_cannot_load_is_one_clear_error(monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # the libraries read the variables on import (done by now): set as a user's shell would
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(InputError, match="hub dataset could not be loaded"):
        load_text_dataset("someone/no-such-dataset-xyz")
