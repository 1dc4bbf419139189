"""Keep the test predictions of exact-prefix records that a longer run of the same config has replaced.

    python tools/keep_prefix_predictions.py [--rev HEAD] [--results results]

A record written by the store since ``prefix_predictions`` existed keeps them itself
(``ResultsStore.put``).  A longer record written by older code (a fill started before that, say)
replaced its prefix record whole; the prefix record is still in git at ``--rev``.  This reads the
version at ``--rev`` of each record changed since, and, where the new record extends it (the same config, and the
same metrics for every epoch they share: a run resumed from its checkpoint), keeps that version's
predictions under ``prefix_predictions``.  Nothing else in the record changes.
"""
import argparse
import json
import subprocess
from pathlib import Path

from patchinit.results import ResultsStore, epochs_run

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--rev", default="HEAD", help="the commit holding the shorter records (default HEAD)")
ap.add_argument("--results", default="results")
args = ap.parse_args()

store = ResultsStore(args.results)
runs = store.runs_dir.resolve()
top = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=runs, check=True, capture_output=True,
                          text=True).stdout.strip())
changed_files = subprocess.run(["git", "diff", "--name-only", args.rev, "--", str(runs)], cwd=top, check=True,
                               capture_output=True, text=True).stdout.split()
older = []
for name in changed_files:
    shown = subprocess.run(["git", "show", f"{args.rev}:{name}"], cwd=top, capture_output=True, text=True)
    path = top / name
    if shown.returncode != 0 or not path.exists():
        continue  # new since that commit, or removed
    old = json.loads(shown.stdout)
    if epochs_run(old) < epochs_run(json.loads(path.read_text())):
        older.append(old)
changed = store.keep_prefix_predictions(older)
print(f"{len(older)} record(s) extend their version at {args.rev}; kept the prefix predictions of {len(changed)}"
      + (": " + ", ".join(changed) if changed else ""))
