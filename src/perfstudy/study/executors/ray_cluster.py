"""The Ray executor: the study's units as Ray tasks, on one host's GPU and CPUs at once or
across a cluster (``perfstudy run STUDY --executor ray [--address auto|HOST:PORT]``).

* **Resources.** A unit on a GPU (a pack, a CUDA run, an SVM the GPU fits) asks for one GPU
  and one CPU; a CPU run asks for ``cpus_per_run`` CPUs (libsvm fits and FLOPs counts for one)
  and limits its threads to them. Ray places each task where its resources are free, so GPU
  packs and CPU runs train side by side. With N GPUs, packs are split so that the N finish
  together (``schedule.spread``) and the costliest go first.
* **The store.** Only this process (the driver) opens it: it claims a unit's runs just before
  submitting the unit, records where it trains when the task reports in, and stores each
  result as it comes back. At most as many units are in flight as the cluster has room for,
  so ``running`` means running (or about to). Workers never open the store.
* **Failures.** A task whose worker process or node dies is run again by Ray, up to
  ``RETRIES`` times, then its runs are stored failed with Ray's error. An error of the run
  itself (bad data, out of memory) is not retried: the task returns it and the runs are
  stored failed, as the local executor stores them. Ctrl-C or SIGTERM cancels the tasks in
  flight and marks their runs interrupted; a driver killed outright leaves its runs
  ``running`` under its own pid, which the next ``perfstudy run`` finds dead and redoes (Ray
  ends a dead driver's tasks with it).
* **Checkpoints.** A task on the driver's node checkpoints beside the store, as the local
  executor does, and resumes from it after a crash; a task on another node neither writes nor
  reads checkpoints (it cannot see the driver's files), so a crash there redoes its unit.
* **Data.** Workers find the datasets as the local executor does (``--data-dir``,
  ``$PERFSTUDY_DATA_DIR`` passed on from the driver, the cache, a download); a worker that
  finds none fails its runs with the one-line data error.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Callable, Sequence

from perfstudy.errors import UsageError
from perfstudy.progress import NullProgress
from perfstudy.study import schedule
from perfstudy.study.execute import (
    INTERRUPTED,
    Interrupted,
    checkpoint_of,
    error_text,
    fail_unit,
    finish_unit,
)
from perfstudy.study.executors import Executor, Outcome
from perfstudy.study.spec import Run
from perfstudy.study.store import Store

RETRIES = 3  # a unit whose worker process or node dies runs again up to this many times
CPUS_PER_RUN = 4  # threads of a CPU run, at most a node's CPUs
RAY_HINT = "pip install 'perfstudy[ray]'"


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError(f"--executor ray needs Ray: {RAY_HINT}") from None
    return ray


def on_gpu(cfg, gpus: bool) -> bool:
    """Whether a run trains on a GPU when the cluster has ``gpus``: as the run itself decides
    on a worker that sees one (device cuda, or auto; an SVM backend torch, or auto)."""
    if cfg.kind == "dl":
        return cfg.device == "cuda" or (cfg.device == "auto" and gpus)
    if cfg.kind == "svm":
        return gpus and cfg.backend in ("torch", "auto")
    return False


def resources(unit: Sequence[Run], gpus: bool, cpus_per_run: int) -> dict:
    """What a unit's task asks Ray for."""
    cfg = unit[0].config
    if on_gpu(cfg, gpus):
        return {"num_gpus": 1, "num_cpus": 1}
    single_threaded = cfg.kind == "flops" or (cfg.kind == "svm" and cfg.backend == "sklearn")
    return {"num_gpus": 0, "num_cpus": 1 if single_threaded else cpus_per_run}


def run_task(cfgs, options: dict, data_dir, checkpoint, driver_node: str, tracker, keys):
    """What a task runs on a worker: train the unit, return its results or its error. Never
    touches the store."""
    import ray

    from perfstudy.study.execute import train_unit
    from perfstudy.threads import limit_threads

    ctx = ray.get_runtime_context()
    gpu_ids = ray.get_gpu_ids()
    node = ctx.get_node_id()
    where = f"node {ray.util.get_node_ip_address()} ({node[:8]})" + (
        f" · GPU {','.join(map(str, gpu_ids))}" if gpu_ids else
        f" · {int(ctx.get_assigned_resources().get('CPU', 1))} CPU")
    tracker.started.remote(keys, where)
    limit_threads(max(1, int(ctx.get_assigned_resources().get("CPU", 1))))
    try:
        results = train_unit(cfgs, data_dir, NullProgress(),
                             checkpoint=checkpoint if node == driver_node else None, **options)
        return {"results": results, "where": where}
    except Exception as exc:  # noqa: BLE001 - an error of the run: stored, not retried
        return {"error": error_text(exc), "where": where}


class GpuWorker:
    """One process per GPU for the whole study (a Ray actor holding one GPU and one CPU): CUDA,
    torch and the datasets are set up once, not per unit (a GPU task would start a fresh
    process each time: Ray's tasks give up a GPU's process after one call)."""

    def __init__(self, task: Callable):
        self.task = task

    def run(self, *args):
        return self.task(*args)

    def free_bytes(self) -> int | None:
        """This GPU's free memory (None: no CUDA device here, e.g. GPUs only declared)."""
        import torch

        return torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None


class Tracker:
    """Collects where tasks started (a Ray actor): the driver drains it while it waits."""

    def __init__(self):
        self.events: list[tuple[list[str], str]] = []

    def started(self, keys: list[str], where: str) -> None:
        self.events.append((keys, where))

    def drain(self) -> list[tuple[list[str], str]]:
        out, self.events = self.events, []
        return out


CONNECT_TIMEOUT_S = 10.0


def check_reachable(address: str | None) -> None:
    """A HOST:PORT address must name a port that answers: Ray itself retries an unreachable
    one for minutes, printing its C++ warnings. ``auto``, ``ray://`` and None are Ray's."""
    if address is None or address == "auto" or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--address: expected auto or HOST:PORT (a port 1-65535), got "
                         f"{address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise UsageError(f"--executor ray: cannot reach a Ray cluster at {address}: "
                         f"{e.strerror or e}") from None


class RayExecutor(Executor):
    def __init__(self, workers: int | None = None, pack: int | str | None = None,
                 compile: bool = False, checkpoint_every_s: float | None = None,
                 address: str | None = None, cpus_per_run: int | None = None,
                 free_bytes: int | None = None, task: Callable = run_task):
        """``address``: a running cluster (``auto`` or ``HOST:PORT``); None starts one on this
        machine. ``free_bytes``: one GPU's free memory (default: read on a GPU of the
        cluster). ``task``: what a task runs (tests replace it to see where units land)."""
        self.pack, self.compile, self.checkpoint_every_s = pack, compile, checkpoint_every_s
        self.address, self.cpus_per_run, self.free_bytes = address, cpus_per_run, free_bytes
        self.task = task
        self.ray = import_ray()
        self._started = False  # whether this executor connected (and so disconnects)

    # -- the cluster
    def connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        self._started = True
        env = {k: os.environ[k] for k in ("PERFSTUDY_DATA_DIR",) if os.environ.get(k)}
        check_reachable(self.address)
        try:
            ray.init(address=self.address, runtime_env={"env_vars": env} if env else None,
                     log_to_driver=False, logging_level="ERROR", configure_logging=True)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise UsageError(f"--executor ray: cannot reach a Ray cluster at "
                             f"{self.address or 'a new local one'}: {e}") from None

    def cuda_available(self) -> bool:
        """Whether the cluster has GPUs (runs that need one are left pending otherwise)."""
        self.connect()
        return self.ray.cluster_resources().get("GPU", 0) > 0

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()

    def _capacity(self) -> tuple[int, int, int]:
        """(GPUs, CPUs, the most CPUs on one node) of the cluster."""
        nodes = [n["Resources"] for n in self.ray.nodes() if n.get("Alive")]
        gpus = int(sum(r.get("GPU", 0) for r in nodes))
        cpus = int(sum(r.get("CPU", 0) for r in nodes))
        return gpus, cpus, int(max((r.get("CPU", 0) for r in nodes), default=1))

    # -- the study
    def execute(self, runs, store: Store, data_dir, progress=None) -> Outcome:
        progress = progress or NullProgress()
        self.connect()
        gpus, cpus, node_cpus = self._capacity()
        cpus_per_run = max(1, min(self.cpus_per_run or CPUS_PER_RUN, node_cpus))
        driver = _Driver(self, store, data_dir, progress, gpus, cpus, cpus_per_run)
        free = self.free_bytes
        if free is None and gpus and any(on_gpu(r.config, True) for r in runs):
            free = driver.gpu_free_bytes()
        units = schedule.units(runs, self.pack, free)
        gpu_units = schedule.spread([u for u in units if on_gpu(u[0].config, gpus > 0)], gpus)
        # CPU units longest first too: the last to start should not be the longest to run
        cpu_units = sorted((u for u in units if not on_gpu(u[0].config, gpus > 0)),
                           key=schedule.unit_work, reverse=True)
        return driver.run(deque(gpu_units), deque(cpu_units), len(runs))


class _Driver:
    """One ``execute``: submits units as room frees up, stores what comes back."""

    def __init__(self, ex: RayExecutor, store: Store, data_dir, progress, gpus: int,
                 cpus: int, cpus_per_run: int):
        self.ex, self.ray, self.store, self.data_dir = ex, ex.ray, store, data_dir
        self.progress, self.gpus, self.cpus, self.cpus_per_run = progress, gpus, cpus, cpus_per_run
        self.inflight: dict = {}  # ObjectRef -> (claimed runs, resources, progress line, actor)
        self.idle_gpu_workers: list = []
        self.gpu_workers = 0
        self.used = {"num_gpus": 0, "num_cpus": 0}
        self.out = Outcome()
        self.driver_node = self.ray.get_runtime_context().get_node_id()
        # on the driver's node: it lives as long as the driver, whatever happens to the others
        here = self.ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
            self.driver_node, soft=False)
        self.tracker = self.ray.remote(num_cpus=0, scheduling_strategy=here)(Tracker).remote()
        self.cpu_task = self.ray.remote(max_retries=RETRIES, retry_exceptions=False)(ex.task)
        self.gpu_worker = self.ray.remote(num_gpus=1, num_cpus=1, max_restarts=RETRIES,
                                          max_task_retries=RETRIES)(GpuWorker)

    def gpu_free_bytes(self) -> int | None:
        """One GPU's free memory, read by the first GPU worker (kept for the units)."""
        actor = self.gpu_worker.remote(self.ex.task)
        self.gpu_workers += 1
        self.idle_gpu_workers.append(actor)
        return self.ray.get(actor.free_bytes.remote())

    def run(self, gpu_units: deque, cpu_units: deque, total: int) -> Outcome:
        self.out.total = total
        bar = self.progress.add(f"runs · ray: {self.gpus} GPU, {self.cpus} CPU", total=total)
        try:
            while gpu_units or cpu_units or self.inflight:
                for queue in (gpu_units, cpu_units):
                    while queue and self._fits(queue[0]):
                        self._submit(queue.popleft(), bar)
                if not self.inflight:  # nothing fits anywhere: the cluster is too small
                    for queue in (gpu_units, cpu_units):
                        while queue:
                            self._refuse(queue.popleft(), bar)
                    break
                self._wait(bar)
        except (KeyboardInterrupt, Interrupted):
            self._cancel()
            raise
        except SystemError as e:  # Ray's C++ wait wraps the signal handler's exception
            if not isinstance(e.__cause__, (KeyboardInterrupt, Interrupted)):
                raise
            self._cancel()
            raise e.__cause__ from None
        finally:
            for actor in [self.tracker, *self.idle_gpu_workers]:
                self.ray.kill(actor)
        self.progress.remove(bar)
        return self.out

    def _res(self, unit) -> dict:
        return resources(unit, self.gpus > 0, self.cpus_per_run)

    def _fits(self, unit) -> bool:
        res = self._res(unit)
        if res["num_gpus"] and not self.idle_gpu_workers and self.gpu_workers >= self.gpus:
            return False
        # a GPU unit uses one CPU besides: leave one CPU per GPU to the GPU units
        cpu_room = self.cpus - self.used["num_cpus"] - (
            0 if res["num_gpus"] else max(0, self.gpus - self.used["num_gpus"]))
        return (self.used["num_gpus"] + res["num_gpus"] <= self.gpus
                and res["num_cpus"] <= cpu_room)

    def _submit(self, unit, bar) -> None:
        claimed = [r for r in unit if self.store.claim(r.key)]
        skipped = len(unit) - len(claimed)
        if skipped:
            self.progress.advance(bar, skipped)  # done, or running under another runner
        if not claimed:
            return
        res = self._res(claimed)
        options = {"compile": self.ex.compile, "checkpoint_every_s": self.ex.checkpoint_every_s}
        if len(claimed) == 1:
            options.pop("compile")
        args = ([r.config for r in claimed], options, self.data_dir,
                checkpoint_of(self.store, claimed), self.driver_node, self.tracker,
                [r.key for r in claimed])
        actor = None
        if res["num_gpus"]:
            actor = self.idle_gpu_workers.pop() if self.idle_gpu_workers else None
            if actor is None:
                actor = self.gpu_worker.remote(self.ex.task)
                self.gpu_workers += 1
            ref = actor.run.remote(*args)
        else:  # CPU tasks spread over the nodes (less contention for memory bandwidth)
            ref = self.cpu_task.options(**res, scheduling_strategy="SPREAD").remote(*args)
        label = f"{claimed[0].experiment}" + (f" · pack of {len(claimed)}" if len(claimed) > 1
                                               else f" · {claimed[0].key}")
        line = self.progress.add(f"  queued · {label}", total=None)
        self.inflight[ref] = (claimed, res, line, actor)
        for k in self.used:
            self.used[k] += res[k]

    def _wait(self, bar) -> None:
        ready, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=1.0)
        self._placements()
        for ref in ready:
            claimed, res, line, actor = self.inflight.pop(ref)
            for k in self.used:
                self.used[k] -= res[k]
            self.progress.remove(line)
            if self._record(ref, claimed) and actor is not None:
                self.idle_gpu_workers.append(actor)
            elif actor is not None:  # dead for good: another is started when needed
                self.gpu_workers -= 1
            self.progress.advance(bar, len(claimed))

    def _placements(self) -> None:
        lines = {tuple(r.key for r in c): (c, line) for c, _, line, _ in self.inflight.values()}
        for keys, where in self.ray.get(self.tracker.drain.remote()):
            self.store.place(keys, where)
            if tuple(keys) in lines:
                claimed, line = lines[tuple(keys)]
                label = claimed[0].experiment + (f" · pack of {len(claimed)}"
                                                 if len(claimed) > 1 else "")
                self.progress.update(line, description=f"  {where} · {label}")

    def _record(self, ref, claimed: list[Run]) -> bool:
        """Store the outcome; False when the worker died (Ray's error, not the run's)."""
        ray, alive = self.ray, True
        try:
            out = ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # the task itself failed outside the run
            out = {"error": f"{type(e.cause).__name__}: {e.cause}\n{e}"}
        except ray.exceptions.RayError as e:  # its worker or node died, RETRIES + 1 times
            alive = False
            first = (str(e).splitlines() or [""])[0]
            out = {"error": f"{type(e).__name__}: the task's worker or node died {RETRIES + 1} "
                            f"times (Ray retried it {RETRIES} times): {first}"}
        status = (fail_unit(self.store, claimed, out["error"]) if "error" in out
                  else finish_unit(self.store, claimed, out["results"]))
        self.out.count([status[r.key] for r in claimed], claimed, self.progress)
        return alive

    def _refuse(self, unit, bar) -> None:
        """A unit no node can take (more CPUs or GPUs than any has): failed, with the reason."""
        res = self._res(unit)
        for r in unit:
            if self.store.claim(r.key):
                self.store.fail(r.key, f"no node of the Ray cluster has {res['num_gpus']} GPU "
                                       f"and {res['num_cpus']} CPU free for this run")
                self.out.count(["failed"], [r], self.progress)
        self.progress.advance(bar, len(unit))

    def _cancel(self) -> None:
        for ref, (claimed, _res, _line, actor) in self.inflight.items():
            if actor is None:
                self.ray.cancel(ref, force=True)
            else:  # an actor's call cannot be force-cancelled: the actor goes (cancelled
                # first, so that Ray does not announce a retry of the call it will not make)
                self.ray.cancel(ref)
                self.ray.kill(actor, no_restart=True)
            fail_unit(self.store, claimed, INTERRUPTED, status="interrupted")
        self.inflight.clear()
