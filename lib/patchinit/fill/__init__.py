"""Fill the results store with grids of runs: ``python -m patchinit.fill GRID... [options]``.

GRID is one of the method-A MNIST claim grids (``mnist-A1``, ``mnist-A3``, ``mnist-A4``, ``mnist-A6``, or
``mnist`` for every MNIST run), ``b2`` and ``b4`` (Conv6 at 50%, Random and PatchesInit, 3 seeds: train them
with ``--prefix``), ``scaling`` (the readings of PatchesInit's scale) and ``scaling-curve`` (its epochs
1-5), ``b7`` (the two inits of Table 5.4), ``cifar10``, ``cifar100``, ``inits``, ``readings``, ``PC``,
``D``, ``tiny``, ``partial`` (method B) or ``a-fixup``, ``a-volume``, ``a-resnet18`` (method A on CIFAR).
The chapters build the same configs with the same functions (:mod:`patchinit.protocols`), so what this trains is exactly what they load.

Runs that differ only in seed and init form a group, which trains as one stack of models on CUDA
(``patchinit.train.train_many``; at most ``--max-group`` models per stack) and one after another on the
CPU; ``--one-by-one`` makes every run its own group.  A group is the unit of work of both engines:

* ``--engine local`` (the default) trains the groups one after another in this process;
* ``--engine ray`` submits one Ray task per group to the cluster at ``--address`` (or to a Ray instance
  started here), one GPU per task on a cluster with GPUs, ``--cpus-per-task`` CPUs otherwise.  Each task
  builds its models from the configs, trains them and *returns* its records; this process alone writes
  them to the store, atomically, as each task finishes, so a killed driver loses only the runs in flight.

Either way every returned record is checked before it is written (:func:`validate_record`): a malformed
one is refused and reported, never stored.  A group that raises is reported with its error and the other
groups go on; ``--retries N`` resubmits it up to N times.  A Ray worker process that dies mid-task is
retried by Ray itself; its group's records still reach the store once.  Runs already in the store are
skipped (checked again just before each group starts).  A driver holds a lease on each run it trains
(``<results>/leases``, :mod:`patchinit.fill.leases`), so two drivers started with the same command on the
same store split the grid between them, neither training a run the other has in flight: on a 2-core CPU,
two single-thread processes (``OMP_NUM_THREADS=1``) side by side, which ``--processes 2`` starts
(:mod:`patchinit.fill.processes`).

``--inits A,B``, ``--seeds 0,1`` and ``--where KEY=V1,V2`` (a column of the grid's rows, e.g.
``--where train.lr=0.001,0.0001``) train part of a grid, in its order.  ``--prefix E`` trains the exact
schedule only up to epoch E (an exact-prefix tier run); a record with at least E epochs serves, and a later
full run supersedes it.  ``--stop-after S`` starts no new group after S seconds.  With ``PATCHINIT_CHECKPOINTS`` set, every group checkpoints after each epoch and a restarted
command resumes it (a prefix run is then extended, not redone); on a cluster that folder must be a path
every node sees (a shared file system).  ``--part i/n`` (deprecated: use ``--engine ray``) takes every
n-th group starting at i.

Records must come from committed code: the command refuses a tree with uncommitted changes to tracked
files (``--allow-dirty`` trains from it anyway), and pins ``PATCHINIT_GIT_COMMIT`` for this
process and every Ray worker to the commit it started from.
"""
from .cli import build_parser, main
from .driver import fill
from .engines import RAY_VERSION, WORKER_ENV, WORKER_RETRIES, LocalEngine, RayEngine
from .leases import LEASE_TTL_S, Leases
from .plan import (GRIDS, Job, grid_rows, parse_part, parse_where, pending, plan_configs, split_groups,
                   split_names, take_part)
from .records import Failure, FillReport, MalformedRecord, train_group, validate_record

__all__ = ["GRIDS", "grid_rows", "plan_configs", "split_groups", "split_names", "parse_where", "parse_part",
           "take_part", "pending", "Job", "train_group", "validate_record", "MalformedRecord", "Failure", "FillReport",
           "LocalEngine", "RayEngine", "Leases", "LEASE_TTL_S", "WORKER_ENV", "WORKER_RETRIES", "fill", "main", "build_parser", "RAY_VERSION"]
