"""The command: ``python -m patchinit.fill GRID... [options]`` (see the package's docstring)."""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from typing import Sequence

from patchinit import protocols as P

from .driver import fill
from .engines import WORKER_ENV, LocalEngine, RayEngine
from .plan import GRIDS, Job, parse_part, parse_where, pending, plan_configs, split_groups, split_names, take_part

# -- the command -------------------------------------------------------------------------------------
def _worker_env(pairs: Sequence[str]) -> dict | None:
    if not pairs:
        return None
    env = {k: os.environ[k] for k in WORKER_ENV if os.environ.get(k)}
    for item in pairs:
        name, eq, value = item.partition("=")
        if not eq:
            if name not in os.environ:
                raise SystemExit(f"--worker-env {name}: not set in this environment; pass {name}=VALUE")
            value = os.environ[name]
        env[name] = value
    return env


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0],
                                 epilog="On a cluster: see the README's 'Running the paper profile on a cluster' and "
                                        "the book's page book/cluster.md.")
    ap.add_argument("grids", nargs="+", choices=sorted(GRIDS))
    ap.add_argument("--profile", default="quick", choices=P.PROFILES)
    ap.add_argument("--part", default=None, metavar="i/n",
                    help="deprecated: train every n-th group from the i-th (use --engine ray to spread a grid)")
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
    ap.add_argument("--where", action="append", default=[], metavar="KEY=V1,V2",
                    help="only the rows whose KEY (a column of the grid's rows, e.g. train.lr) is one of these "
                         "values (repeatable)")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="train from a tree with uncommitted changes (records carry the diff's hash)")
    ap.add_argument("--stop-after", type=float, default=None,
                    help="start no new group after this many seconds (a device lease's or session's time limit)")
    ap.add_argument("--engine", default="local", choices=("local", "ray"),
                    help="local: train here (default); ray: one Ray task per group on a cluster")
    ap.add_argument("--address", default=None,
                    help="with --engine ray: the cluster to join (host:port, or 'auto' for this node's); "
                         "default: start Ray here")
    ap.add_argument("--retries", type=int, default=0, metavar="N", help="resubmit a group that raised up to N times")
    ap.add_argument("--cpus-per-task", type=float, default=1, help="with --engine ray on CPUs: CPUs per group")
    ap.add_argument("--gpus-per-task", type=float, default=None,
                    help="with --engine ray on GPUs: GPUs per group (default 1; 0.5 puts two groups on a GPU)")
    ap.add_argument("--max-in-flight", type=int, default=None,
                    help="with --engine ray: most groups submitted at once (default: twice the cluster's slots)")
    ap.add_argument("--worker-env", action="append", default=[], metavar="NAME[=VALUE]",
                    help="with --engine ray: an environment variable for the workers (repeatable; besides "
                         f"{', '.join(WORKER_ENV)})")
    ap.add_argument("--ship-code", action=argparse.BooleanOptionalAction, default=None,
                    help="with --engine ray: upload this checkout's patchinit to the workers "
                         "(default: when --address is given)")
    ap.add_argument("--processes", type=int, default=1, metavar="N",
                    help="with the local engine: N driver processes of one thread each, sharing the grid "
                         "(on a 2-core CPU, 2 trains small models fastest)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """The command line; returns the exit status (1 when some run failed)."""
    from patchinit.provenance import git_state
    from patchinit.results import ResultsStore, config_key

    ap = build_parser(prog)
    args = ap.parse_args(argv)
    name = ap.prog
    part = None
    if args.part is not None:
        try:
            part = parse_part(args.part)
        except ValueError as e:
            ap.error(str(e))
        msg = (f"{name}: --part is deprecated and will be removed; spread a grid over processes, GPUs or "
               "machines with --engine ray (see the README)")
        warnings.warn(msg, DeprecationWarning, stacklevel=1)  # for callers; the line below for people
        print(msg, file=sys.stderr, flush=True)
    if args.retries < 0:
        ap.error(f"--retries must be >= 0, got {args.retries}")
    if args.address and args.engine != "ray":
        ap.error("--address needs --engine ray")
    if args.processes < 1:
        ap.error(f"--processes must be >= 1, got {args.processes}")
    if args.processes > 1 and args.engine == "ray":
        ap.error("--processes is for the local engine; with --engine ray, Ray spreads the groups itself "
                 "(--cpus-per-task 1 gives one core to each)")
    if not args.dry_run:
        state = git_state()
        if "git_diff_sha256" in state and not args.allow_dirty:
            sys.exit(f"{name}: the checkout has uncommitted changes to tracked files, so the records would not "
                     "name the code that made them. Commit first (or run from a clean worktree: git worktree add "
                     "/tmp/fill HEAD), or pass --allow-dirty to record the diff's hash instead.")
        os.environ.setdefault("PATCHINIT_GIT_COMMIT", state["git_commit"])  # the code as it was at the start
        if "git_diff_sha256" in state:
            os.environ.setdefault("PATCHINIT_GIT_DIFF_SHA256", state["git_diff_sha256"])
        if args.processes > 1:  # the children inherit the pinned commit
            from .processes import run_processes

            return run_processes(args.processes, sys.argv[1:] if argv is None else list(argv))
    t_start = time.monotonic()
    store = ResultsStore(args.results)
    if not args.dry_run:
        store.check_writable()
    inits = split_names(args.inits) if args.inits else None
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    where = parse_where(args.where)
    if inits:
        known = {r.get("init") for g in args.grids for r, _ in GRIDS[g](args.profile)}
        unknown = [i for i in inits if i not in known]
        if unknown:
            raise SystemExit(f"--inits: no row of {', '.join(args.grids)} has init {unknown}; "
                             f"the inits there are {sorted(k for k in known if k)}")
    jobs: list[Job] = []
    what = f"epochs 1-{args.prefix} of " if args.prefix else ""
    seen: set[str] = set()
    n_todo = 0
    for grid in args.grids:
        planned = plan_configs(grid, args.profile, inits=inits, seeds=seeds, where=where, precision=args.precision)
        configs = [c for c in planned if config_key(c) not in seen]  # a run two grids share trains once
        seen.update(config_key(c) for c in configs)
        shared = f" ({len(planned) - len(configs)} more in an earlier grid)" if len(configs) < len(planned) else ""
        groups = split_groups(configs, one_by_one=args.one_by_one, max_group=args.max_group)
        mine = take_part(groups, part) if part else groups
        todo = pending(store, mine, args.prefix)
        who = "this part trains" if part else "to train:"
        print(f"{grid}: {len(configs)} runs{shared} in {len(groups)} groups; {who} {what}{sum(map(len, todo))} "
              f"runs in {len(todo)} groups", flush=True)
        if args.dry_run:
            print("  group sizes:", [len(g) for g in todo], flush=True)
            continue
        n_todo += sum(map(len, todo))
        # every group goes to fill(), which skips the stored runs again (and counts them) just before it starts
        jobs += [Job(f"{grid} group {k}/{len(mine)}", list(g)) for k, g in enumerate(mine, 1)]
    if args.dry_run:
        return 0
    if args.engine == "ray" and n_todo:  # no cluster to join when everything is stored
        engine = RayEngine(args.address, device=args.device, cpus_per_task=args.cpus_per_task,
                           gpus_per_task=args.gpus_per_task, max_in_flight=args.max_in_flight,
                           worker_env=_worker_env(args.worker_env), ship_code=args.ship_code)
    else:
        engine = LocalEngine()
    from tqdm import tqdm
    import torch

    if n_todo:
        print(f"training with {torch.get_num_threads()} torch thread(s) in process {os.getpid()}", flush=True)
    try:
        report = fill(store, jobs, engine=engine, device=args.device, prefix=args.prefix, retries=args.retries,
                      stop_after_s=args.stop_after, started=t_start, progress=False if args.no_progress else None,
                      announce=lambda line: (tqdm.write("  " + line, file=sys.stdout), sys.stdout.flush()))
    finally:
        engine.close()
    for f in report.failures:
        print(f.line(), flush=True)
    print(report.summary(), flush=True)
    return 1 if report.failures else 0

