"""Fill the results store ahead of the CIFAR chapters: ``python tools/fill_results.py GRID... [--part i/n]``.

GRID is one of cifar10, cifar100, inits, readings, PC, D, tiny, partial (method B) or a-fixup, a-volume, a-resnet18
(method A).  Runs that differ only in seed and init form a group, which trains as one stack of models on
CUDA (``patchinit.multi.train_many``; at most ``--max-group`` models per stack) and one after another on
the CPU.  ``--part i/n`` takes every n-th group of the grid starting at i and trains the runs not yet
stored, so n processes share a machine without overlap however far each has got (set OMP_NUM_THREADS
so they do not oversubscribe it).  With ``PATCHINIT_CHECKPOINTS`` set, every group checkpoints after
each epoch and a restarted command resumes it, so a grid can be filled over several short GPU leases.
The chapters build the same configs with the same functions, so what this trains is exactly what they load.
"""
import argparse
import sys
import time

from patchinit import protocols as P
from patchinit.experiment import groups_of, run_all
from patchinit.results import ResultsStore

GRIDS = {"cifar10": lambda p: P.method_b_accuracy_grid(p, "cifar10"),
         "cifar100": lambda p: P.method_b_accuracy_grid(p, "cifar100"),
         "inits": P.method_b_init_grid,
         "readings": P.method_b_reading_grid,
         "PC": lambda p: P.method_b_ablation_grid(p, "PC"),
         "D": lambda p: P.method_b_ablation_grid(p, "D"),
         "a-fixup": P.method_a_cifar_grid,
         "a-volume": P.method_a_volume_grid,
         "a-resnet18": P.method_a_resnet18_grid,
         "tiny": P.method_b_tinyimagenet_grid,
         "partial": P.method_b_partial_grid}

ap = argparse.ArgumentParser()
ap.add_argument("grids", nargs="+", choices=sorted(GRIDS))
ap.add_argument("--profile", default="quick", choices=P.PROFILES)
ap.add_argument("--part", default="0/1")
ap.add_argument("--device", default="auto")
ap.add_argument("--results", default="results")
ap.add_argument("--max-group", type=int, default=None, help="most models trained in one stack")
ap.add_argument("--one-by-one", action="store_true", help="train every run alone")
ap.add_argument("--dry-run", action="store_true", help="say what would be trained, train nothing")
ap.add_argument("--stop-after", type=float, default=None,
                help="start no new group after this many seconds (a device lease's time limit)")
args = ap.parse_args()
i, n = map(int, args.part.split("/"))
t_start = time.monotonic()
store = ResultsStore(args.results)
for name in args.grids:
    configs = [c for _, c in GRIDS[name](args.profile)]
    groups = [[c] for c in configs] if args.one_by_one else groups_of(configs, args.max_group)
    mine = groups[i::n]  # split the grid, not the missing list: parts never overlap
    todo = [store.missing(g) for g in mine]
    todo = [g for g in todo if g]
    print(f"{name}: {len(configs)} runs in {len(groups)} groups; this part trains {sum(map(len, todo))} runs "
          f"in {len(todo)} groups", flush=True)
    if args.dry_run:
        print("  group sizes:", [len(g) for g in todo], flush=True)
        continue
    for k, members in enumerate(todo, 1):
        if args.stop_after is not None and time.monotonic() - t_start > args.stop_after:
            print(f"stopping: {args.stop_after:.0f} s have passed; rerun the command to go on", flush=True)
            sys.exit(0)
        run_all(store, members, device=args.device, group=not args.one_by_one, max_group=args.max_group)
        print(f"  {name} group {k}/{len(todo)} ({len(members)} runs) done", flush=True)
