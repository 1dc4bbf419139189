"""Where groups train: :class:`LocalEngine` (this process) or :class:`RayEngine` (one Ray task per group)."""
from __future__ import annotations

import itertools
import logging
import os
import traceback
from typing import Callable, Mapping, Sequence

from .records import train_group

log = logging.getLogger(__name__)

#: The Ray release this project pins and tests (requirements.txt); other 2.x releases likely work.
RAY_VERSION = "2.60.0"
#: How often Ray reruns a task whose worker process died (a system failure, not an exception).
WORKER_RETRIES = 3
#: The driver's environment variables handed to every Ray worker (when set).
WORKER_ENV = ("PATCHINIT_GIT_COMMIT", "PATCHINIT_GIT_DIFF_SHA256", "PATCHINIT_DATA", "PATCHINIT_CACHE", "PATCHINIT_PATTERN_CACHE", "PATCHINIT_COMPILE",
              "PATCHINIT_CHECKPOINTS")


# -- engines -----------------------------------------------------------------------------------------
def _error_text(e: BaseException) -> str:
    cause = getattr(e, "cause", None)  # a RayTaskError wraps the task's own exception
    if isinstance(cause, BaseException):
        e = cause
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


class LocalEngine:
    """Trains each group in this process, one after another (the default engine)."""

    name = "local"
    slots = 1
    inner_progress = None  # per-epoch bars on a terminal, as a plain run shows

    def __init__(self, train_fn: Callable[..., list] | None = None):
        self.train_fn = train_fn or train_group
        self._jobs: dict[int, dict] = {}
        self._ids = itertools.count()

    def submit(self, kwargs: dict) -> int:
        handle = next(self._ids)
        self._jobs[handle] = kwargs
        return handle

    def next_done(self, handles: Sequence[int]):
        """Run the first of ``handles``; return it with its records or the exception it raised."""
        handle = handles[0]
        kwargs = self._jobs.pop(handle)
        try:
            return handle, self.train_fn(**kwargs)
        except Exception as e:  # reported with the group; the other groups go on
            log.debug("group failed:\n%s", traceback.format_exc())
            return handle, e

    def close(self) -> None:
        pass


class RayEngine:
    """Submits each group as a Ray task and hands back each task's records as it finishes.

    ``address`` is the cluster's (``"auto"`` for the one this node belongs to); None starts a Ray instance
    in this process unless one is already initialised (``init_kwargs`` go to ``ray.init`` then).  On a
    cluster with GPUs each task takes ``gpus_per_task`` GPUs (default 1), else ``cpus_per_task`` CPUs.
    At most ``max_in_flight`` tasks are submitted at once (default: twice the tasks the cluster can run),
    so that ``stop_after_s`` and the store check just before submission take effect.  ``worker_env`` are
    environment variables for the workers (default: the driver's :data:`WORKER_ENV` that are set);
    ``ship_code`` uploads this process's ``patchinit`` to the workers (default: when ``address`` is given),
    so they train with the code the records name.
    """

    name = "ray"
    inner_progress = False

    def __init__(self, address: str | None = None, *, device: str | None = "auto", cpus_per_task: float = 1,
                 gpus_per_task: float | None = None, max_in_flight: int | None = None,
                 worker_env: Mapping[str, str] | None = None, ship_code: bool | None = None,
                 train_fn: Callable[..., list] | None = None, init_kwargs: Mapping | None = None):
        # Ray's driver otherwise swaps builtins.print for its tqdm-safe print the first time it relays a
        # worker's or raylet's log line (a killed worker, say), for the rest of the process; numba then cannot
        # compile any function that calls print, and UMAP (method A's nearest-neighbour search) fails with
        # "Untyped global name 'print'" in the same process.  Ray reads this when it first relays a line.
        os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")
        try:
            import ray
        except ImportError:
            raise ImportError(f"--engine ray needs Ray: pip install ray=={RAY_VERSION} (or use --engine local)") \
                from None
        self._ray = ray
        self._owns = False
        env = {k: os.environ[k] for k in WORKER_ENV if os.environ.get(k)} if worker_env is None else dict(worker_env)
        ship = ship_code if ship_code is not None else address is not None
        task_env: dict = {"env_vars": env} if env else {}
        if not ray.is_initialized():
            # the job's runtime environment: the variables, and (uploaded once) this process's patchinit
            job_env = dict(task_env)
            if ship:
                import patchinit

                job_env["py_modules"] = [patchinit]
            init_kwargs = dict(init_kwargs or {})
            if job_env:
                init_kwargs["runtime_env"] = {**job_env, **init_kwargs.get("runtime_env", {})}
            ray.init(address=address, **init_kwargs)
            self._owns = True
            task_env = {}  # the tasks inherit the job's
        elif ship_code:
            raise RuntimeError("ship_code needs the engine to start Ray (ray.init with the code as a job-level "
                               "py_module); Ray is already initialised in this process")
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0))
        cpus = float(resources.get("CPU", 0))
        wants_cpu = device is not None and str(device).startswith("cpu")
        if device is not None and str(device).startswith("cuda") and gpus == 0:
            raise RuntimeError(f"--device {device} but the Ray cluster has no GPUs (resources: {resources}); "
                               "start its nodes on GPU machines or pass --device cpu")
        self.gpus_per_task = 0.0 if wants_cpu or gpus == 0 else float(gpus_per_task or 1)
        self.cpus_per_task = float(cpus_per_task)
        if self.gpus_per_task:
            capacity = int(gpus // self.gpus_per_task)
        else:
            capacity = int(cpus // self.cpus_per_task) if self.cpus_per_task else int(cpus)
        self.slots = int(max_in_flight) if max_in_flight else max(1, 2 * capacity)
        options = {"num_cpus": self.cpus_per_task, "max_retries": WORKER_RETRIES, "retry_exceptions": False}
        if self.gpus_per_task:
            options["num_gpus"] = self.gpus_per_task
        if task_env:
            options["runtime_env"] = task_env
        self._remote = ray.remote(train_fn or train_group).options(**options)
        log.info("Ray engine: %s; %s per task; up to %d tasks in flight",
                 {k: v for k, v in resources.items() if k in ("CPU", "GPU")},
                 f"{self.gpus_per_task:g} GPU" if self.gpus_per_task else f"{self.cpus_per_task:g} CPU", self.slots)

    def submit(self, kwargs: dict):
        return self._remote.remote(**kwargs)

    def next_done(self, handles: Sequence):
        """Wait for the first of ``handles`` to finish; return it with its records or its exception."""
        ready, _ = self._ray.wait(list(handles), num_returns=1)
        ref = ready[0]
        try:
            return ref, self._ray.get(ref)
        except Exception as e:  # a task's exception (RayTaskError), or its worker died past WORKER_RETRIES
            log.debug("task failed: %s", e)
            return ref, e

    def close(self) -> None:
        if self._owns:
            self._ray.shutdown()
