"""Fill the results store ahead of the chapters: ``python tools/fill_results.py GRID... [options]``.

GRID is one of the method-A MNIST claim grids (mnist-A1, mnist-A3, mnist-A4, mnist-A6, or mnist for every
MNIST run), b2 and b4 (Conv6 at 50%, Random and PatchesInit, 3 seeds: train them with --prefix), cifar10, cifar100, inits, readings, PC, D, tiny, partial (method B) or a-fixup, a-volume,
a-resnet18 (method A on CIFAR).  Runs that differ only in seed and init form a group, which trains as one
stack of models on CUDA (``patchinit.multi.train_many``; at most ``--max-group`` models per stack) and one
after another on the CPU; ``--one-by-one`` makes every run its own group, so each record lands as soon as
its run ends.  ``--part i/n`` takes every n-th group starting at i, so n processes share a machine without
overlap (set OMP_NUM_THREADS=1 for each).  ``--prefix E`` trains the exact schedule only up to epoch E
(an exact-prefix tier run); a record with at least E epochs serves, and a later full run supersedes it.
``--stop-after S`` starts no new group after S seconds.  With ``PATCHINIT_CHECKPOINTS`` set, every group
checkpoints after each epoch and a restarted command resumes it (a prefix run is then extended, not redone).

Records must come from committed code: the command refuses a tree with uncommitted changes to tracked
files (``--allow-dirty`` records the diff's hash instead).  The chapters build the same configs with the
same functions, so what this trains is exactly what they load.
"""
import argparse
import os
import sys
import time

from patchinit import protocols as P
from patchinit.experiment import groups_of, identify, run_all
from patchinit.results import ResultsStore, git_state


def _mnist(claims):
    return lambda p: [(row, cfg) for row, cfg in P.method_a_mnist_grid(p) if P.mnist_claims_of(row) & set(claims)]


GRIDS = {"mnist": P.method_a_mnist_grid,
         "mnist-A1": _mnist(["A1"]), "mnist-A3": _mnist(["A3"]), "mnist-A4": _mnist(["A4"]),
         "mnist-A6": _mnist(["A6"]),
         "b2": lambda p: P.method_b_early_grid(p, "cifar10"),
         "b4": lambda p: P.method_b_early_grid(p, "cifar100"),
         "cifar10": lambda p: P.method_b_accuracy_grid(p, "cifar10"),
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("grids", nargs="+", choices=sorted(GRIDS))
    ap.add_argument("--profile", default="quick", choices=P.PROFILES)
    ap.add_argument("--part", default="0/1")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--results", default="results")
    ap.add_argument("--max-group", type=int, default=None, help="most models trained in one stack")
    ap.add_argument("--one-by-one", action="store_true", help="train every run alone")
    ap.add_argument("--dry-run", action="store_true", help="say what would be trained, train nothing")
    ap.add_argument("--prefix", type=int, default=None, metavar="E",
                    help="train only epochs 1..E of each run's exact schedule (an exact-prefix run)")
    ap.add_argument("--precision", default="fp32", choices=P.PRECISIONS,
                    help="bf16: the labelled bfloat16-autocast variant for GPU sessions (other keys)")
    ap.add_argument("--inits", default=None, help="comma-separated: only the rows with these inits")
    ap.add_argument("--seeds", default=None, help="comma-separated: only these seeds")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="train from a tree with uncommitted changes (records carry the diff's hash)")
    ap.add_argument("--stop-after", type=float, default=None,
                    help="start no new group after this many seconds (a device lease's or session's time limit)")
    args = ap.parse_args(argv)
    i, n = map(int, args.part.split("/"))
    if not args.dry_run:
        state = git_state()
        if "git_diff_sha256" in state and not args.allow_dirty:
            sys.exit("fill_results: the checkout has uncommitted changes to tracked files, so the records would not "
                     "name the code that made them. Commit first (or run from a clean worktree: git worktree add "
                     "/tmp/fill HEAD), or pass --allow-dirty to record the diff's hash instead.")
        os.environ.setdefault("PATCHINIT_GIT_COMMIT", state["git_commit"])  # the code as it was at the start
    t_start = time.monotonic()
    store = ResultsStore(args.results)
    if not args.dry_run:
        store.check_writable()
    inits = set(args.inits.split(",")) if args.inits else None
    seeds = {int(s) for s in args.seeds.split(",")} if args.seeds else None
    for name in args.grids:
        rows = GRIDS[name](args.profile)
        rows = [(r, c) for r, c in rows if (inits is None or r.get("init") in inits)
                and (seeds is None or r.get("seed", c.get("seed")) in seeds)]
        configs = [identify(P.with_precision(c, args.precision)) for _, c in rows]
        groups = [[c] for c in configs] if args.one_by_one else groups_of(configs, args.max_group)
        mine = groups[i::n]  # split the grid, not the missing list: parts never overlap
        todo = [store.missing(g, args.prefix) for g in mine]
        todo = [g for g in todo if g]
        what = f"epochs 1-{args.prefix} of " if args.prefix else ""
        print(f"{name}: {len(configs)} runs in {len(groups)} groups; this part trains {what}{sum(map(len, todo))} "
              f"runs in {len(todo)} groups", flush=True)
        if args.dry_run:
            print("  group sizes:", [len(g) for g in todo], flush=True)
            continue
        for k, members in enumerate(todo, 1):
            if args.stop_after is not None and time.monotonic() - t_start > args.stop_after:
                print(f"stopping: {args.stop_after:.0f} s have passed; rerun the command to go on", flush=True)
                return
            run_all(store, members, device=args.device, group=not args.one_by_one, max_group=args.max_group,
                    stop_after=args.prefix, announce=lambda line: print("  " + line, flush=True))
            print(f"  {name} group {k}/{len(todo)} ({len(members)} runs) done "
                  f"after {time.monotonic() - t_start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
