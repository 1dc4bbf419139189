"""The committed results store: every record's stored predictions line up with the labels of the test
images it was scored on, so the per-image tests (McNemar, Stuart–Maxwell) pair the right images.

One test per file in ``results/runs``.  A record names the data copy it was made on
(``config["data_fingerprint"]``); one made on another copy than the one found here is skipped,
with both fingerprints in the reason, since its test images are not the local ones.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from patchinit import experiment as E
from patchinit.results import ResultsStore, decode_predictions, epochs_run

RESULTS = Path(__file__).resolve().parents[1] / "results"
RECORDS = {rec["key"]: rec for rec in ResultsStore(RESULTS).records()} if (RESULTS / "runs").is_dir() else {}


def test_the_committed_store_is_not_empty():
    assert len(RECORDS) > 0, f"no records in {RESULTS / 'runs'}"


@pytest.mark.parametrize("key", sorted(RECORDS))
def test_stored_predictions_give_the_stored_accuracy(key, data_root, monkeypatch):
    monkeypatch.setenv("PATCHINIT_DATA", str(data_root))
    record = RECORDS[key]
    config = record["config"]
    dataset = config["dataset"]
    made_on, here = config.get("data_fingerprint"), E.data_fingerprint(dataset)
    if made_on != here:
        pytest.skip(f"record {key} was made on the {dataset} copy {made_on}; the copy here is {here}")
    if record.get("predictions") is None:
        pytest.fail(f"record {key} stores no predictions")
    predictions = decode_predictions(record["predictions"])
    labels = E.test_labels(config)
    assert predictions.shape == labels.shape, (key, predictions.shape, labels.shape)
    accuracy = 100.0 * int((predictions == labels).sum()) / len(labels)  # as patchinit.train.evaluate counts
    # the predictions are the last trained epoch's; an exact-prefix record stops before its schedule ends,
    # and its result is that of the last epoch run
    assert len(record["metrics"]) == epochs_run(record)
    assert accuracy == record["result"]["test_acc"] == record["metrics"][-1]["test_acc"], key
    # the predictions kept from the shorter records this one extended give those epochs' accuracy
    for epoch, enc in (record.get("prefix_predictions") or {}).items():
        kept = decode_predictions(enc)
        assert kept.shape == labels.shape and int(epoch) < epochs_run(record), (key, epoch)
        assert 100.0 * int((kept == labels).sum()) / len(labels) == record["metrics"][int(epoch) - 1]["test_acc"], (key, epoch)
