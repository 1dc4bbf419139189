"""Fill the results store ahead of the CIFAR chapters: ``python tools/fill_results.py GRID... [--part i/n]``.

GRID is one of cifar10, cifar100, inits, readings, PC, D, tiny, partial (method B) or a-fixup, a-volume, a-resnet18
(method A).  ``--part i/n`` takes every n-th run of the grid
starting at i and trains those not yet stored, so n processes share a machine without overlap
however far each has got (set OMP_NUM_THREADS so they do not
oversubscribe it).  The chapters build the same configs with the same functions, so what this
trains is exactly what they load.
"""
import argparse

from patchinit import protocols as P
from patchinit.experiment import run_all
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
args = ap.parse_args()
i, n = map(int, args.part.split("/"))
store = ResultsStore(args.results)
for name in args.grids:
    configs = [c for _, c in GRIDS[name](args.profile)]
    todo = store.missing(configs[i::n])  # split the grid, not the missing list: parts never overlap
    print(f"{name}: {len(configs)} runs, this part trains {len(todo)} of its {len(configs[i::n])}", flush=True)
    for k, cfg in enumerate(todo, 1):
        run_all(store, [cfg], device=args.device, group=False)
        print(f"  {name} {k}/{len(todo)} done", flush=True)
