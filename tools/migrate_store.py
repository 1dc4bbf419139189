"""Give every stored record the fingerprint of the data copy it was trained on, under its new key.

    python tools/migrate_store.py [--results results] [--dry-run]

Records made before runs were keyed by their data copy name only the dataset.  Every one of them
was trained on this project's shared copies (``$PATCHINIT_DATA``, see ``book/intro.md``), so the
fingerprint of that local copy is added to each config (``experiment.identify``), the record is
written under the key of the new config, with a ``migrations`` note, and the old file is removed.
Run it only where ``$PATCHINIT_DATA`` holds the copies the records came from.
"""
import argparse

from patchinit.experiment import identify
from patchinit.results import ResultsStore

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--results", default="results")
ap.add_argument("--dry-run", action="store_true")
args = ap.parse_args()
store = ResultsStore(args.results)
if args.dry_run:
    todo = [r for r in store.records() if not r["config"].get("data_fingerprint")]
    print(f"{len(todo)} record(s) lack a data fingerprint")
else:
    done = store.rekey(identify, "data_fingerprint added: trained on this project's shared data copy")
    print(f"re-keyed {len(done)} record(s)")
