"""Add the records of a tarball (``tools/gpu_session.sh fill`` writes ``runs.tar``) to the results store.

``python tools/import_runs.py RUNS.tar [--results results]``.  Each record must be a results record
whose file name is its config's key; a record already in the store is left as it is (the store never
loses or overwrites a result), and any record that fails the check stops the import before anything
is written, naming the file and the problem.
"""
import argparse
import json
import sys
import tarfile

from patchinit.results import ResultsStore, config_key

ap = argparse.ArgumentParser()
ap.add_argument("tarball")
ap.add_argument("--results", default="results")
args = ap.parse_args()
store = ResultsStore(args.results)
records = []
with tarfile.open(args.tarball) as tar:
    for member in tar.getmembers():
        if not member.isfile():
            continue
        name = member.name.rsplit("/", 1)[-1]
        try:
            record = json.load(tar.extractfile(member))
            key = config_key(record["config"])
        except (ValueError, KeyError, TypeError) as err:
            sys.exit(f"{name}: not a results record ({type(err).__name__}: {err}); nothing imported")
        if name != f"{key}.json":
            sys.exit(f"{name}: its config's key is {key}, so the file name does not match; nothing imported")
        records.append(record)
added = 0
for record in records:
    if record["config"] in store:
        print(f"kept the stored {config_key(record['config'])} (already there)")
        continue
    store.put(record)
    added += 1
print(f"imported {added} of {len(records)} records into {store.runs_dir}")
