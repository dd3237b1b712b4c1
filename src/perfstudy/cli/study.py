"""Study commands: ``run``, ``status`` and ``runs``."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from perfstudy.cli.output import print_json, print_table
from perfstudy.config import CONFIGS
from perfstudy.dl.checkpoint import CHECKPOINT_EVERY_S
from perfstudy.errors import UsageError
from perfstudy.progress import progress_bars, wanted
from perfstudy.study import spec as studies
from perfstudy.study.executors import EXECUTORS, Interrupted, execute_plan
from perfstudy.study.executors import make as make_executor
from perfstudy.study.flat import columns, flatten, varying
from perfstudy.study.plan import find_data, plan
from perfstudy.study.store import STATUSES, Store


def _db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default="perfstudy.db", help="results store (default ./perfstudy.db)")


def add_commands(sub) -> None:
    _run_command(sub)
    _store_commands(sub)


def _run_command(sub) -> None:
    p = sub.add_parser("run", help="run a study file: every run not yet done, stored as it ends",
                       description="Expand STUDY.yaml into runs and execute those not yet done "
                       "in the results store. Runs already done are skipped; failed ones are "
                       "retried only with --retry-failed. Safe to interrupt and run again.")
    p.add_argument("study", help="study file (YAML), e.g. studies/quick.yaml")
    p.add_argument("-o", "--override", action="append", metavar="KEY=VALUE",
                   help="set KEY to VALUE in every experiment that has it (repeatable); "
                   "-o repeats=N: N seeds (0..N-1) for every deep-learning experiment (SVM fits "
                   "and FLOPs counts do not depend on a seed)")
    p.add_argument("--only", action="append", metavar="EXPERIMENT",
                   help="run only this experiment (repeatable)")
    p.add_argument("--filter", action="append", metavar="KEY=VALUE",
                   help="run only runs whose config has KEY=VALUE (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their count")
    p.add_argument("--gpus", type=int, metavar="N",
                   help="with --dry-run: the plan of the GPU work on N GPUs (packs per GPU, in "
                   "order, and when each GPU would finish), as --executor ray schedules it")
    p.add_argument("--gpu-memory", type=float, metavar="GIB",
                   help="with --gpus: one GPU's free memory, which bounds the packs "
                   "(default 139, an H200)")
    p.add_argument("--timings", metavar="DB", action="append",
                   help="with --gpus: a store of earlier GPU runs whose measured times turn "
                   "the plan's work into seconds (repeatable; e.g. "
                   "docs/results/seed-h200/seed.db)")
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    p.add_argument("--executor", choices=EXECUTORS.names(), default="local",
                   help="local: one run (or GPU pack) at a time in this process; pool: worker "
                   "processes; ray: Ray tasks, GPU packs and CPU runs at the same time, on this "
                   "machine or a cluster (needs perfstudy[ray])")
    p.add_argument("--workers", type=int, help="worker processes for --executor pool")
    p.add_argument("--address", metavar="auto|HOST:PORT",
                   help="--executor ray: the Ray cluster to use (default: start one here)")
    p.add_argument("--cpus-per-run", type=int, metavar="N",
                   help="--executor ray: CPU threads of each CPU run (default 4, at most a "
                   "node's CPUs; libsvm fits and FLOPs counts take 1)")
    p.add_argument("--pack", metavar="auto|N|off",
                   help="on a GPU, train up to N runs at once (auto: as many as fit); "
                   "default: each experiment's own 'pack:' setting")
    p.add_argument("--compile", action="store_true",
                   help="on a GPU, packed runs' forward and loss through torch.compile "
                   "(Inductor), ResNet-50s fused 4 to a group: more throughput after a "
                   "compilation per model and batch size (docs/performance.md has the figures)")
    p.add_argument("--checkpoint-every", type=float, metavar="SECONDS",
                   help="save a training run's (or a GPU pack's) state this often, at the end "
                   f"of an epoch, beside the store (default {CHECKPOINT_EVERY_S:g}; 0: every "
                   "epoch): started again after a crash, it resumes from there (runs that "
                   "replay a CUDA graph alone take minutes and do not checkpoint)")
    p.add_argument("--data-dir", help="folder with the datasets' IDX files")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _db(p)
    p.set_defaults(func=cmd_run)


def _store_commands(sub) -> None:
    p = sub.add_parser("merge", help="copy the runs and results of other stores into one",
                       description="Copy every run of SOURCE stores into --db (created if "
                       "missing): runs it lacks, and results of runs done in a source but not "
                       "in it. A run done in both keeps --db's result. For a study run in "
                       "parts, on several machines or in several sessions (--filter).")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="results store(s) to copy from")
    _db(p)
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("status", help="per experiment: done/failed/pending counts and an ETA")
    _db(p)
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("runs", help="the stored runs and their results as one flat table")
    _db(p)
    p.add_argument("--filter", action="append", metavar="KEY=VALUE",
                   help="only rows with KEY=VALUE (config keys, status, experiments)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--columns", metavar="A,B,...|all",
                   help="the columns to show (default: a few that tell the runs apart in a "
                   "table, all of them in csv and json)")
    p.set_defaults(func=cmd_runs)


def _load(args):
    overrides = studies.parse_assignments(args.override, "-o")
    filters = studies.parse_assignments(args.filter, "--filter")
    study = studies.load(args.study, overrides=overrides, only=args.only)
    runs = studies.filter_runs(study.runs(), filters)
    if not runs:
        raise UsageError(f"{args.study}: no runs match the --only/--filter given")
    return study, runs


def cmd_run(args) -> int:
    study, runs = _load(args)
    if args.gpus is not None and not args.dry_run:
        raise UsageError("--gpus plans a study's GPU work: use it with --dry-run")
    for flag, value in (("--gpu-memory", args.gpu_memory), ("--timings", args.timings)):
        if value is not None and args.gpus is None:
            raise UsageError(f"{flag} applies to the plan of --dry-run --gpus N: add --gpus")
    if args.dry_run:
        done = _done_in(args.db, runs)
        return _gpu_plan(runs, done, args) if args.gpus is not None else \
            _dry_run(study, runs, done, args.db)
    ex = make_executor(args.executor, **_executor_options(args))
    try:
        cuda = ex.cuda_available()  # first: a cluster that cannot be reached leaves no store
        store = Store(args.db)
        p = plan(study, runs, store, retry_failed=args.retry_failed, cuda=cuda)
        if not _announce(study, p, args):
            return 1 if p.failed else 0
        t0 = time.perf_counter()
        with progress_bars(wanted(args.quiet)) as progress:
            out = execute_plan(p, store, ex, data_dir=args.data_dir, progress=progress)
    except (KeyboardInterrupt, Interrupted):
        print("interrupted: the runs in progress are marked interrupted; run the same command "
              "again to resume", file=sys.stderr)
        return 130
    finally:
        ex.close()
    # counted in the store: another runner may have done runs of this study meanwhile
    status = store.status_of(list({r.key for r in runs}))
    print(f"study {study.name}: {out.done} run(s) done here, {out.failed} failed, in "
          f"{_duration(time.perf_counter() - t0)}; {sum(s == 'done' for s in status.values())}"
          f"/{p.total} done in {args.db}"
          + (f"; see `perfstudy runs --db {args.db} --filter status=failed`" if out.failed
             else ""), file=_say())
    return 1 if len(p.failed) + out.failed else 0


def _executor_options(args) -> dict:
    """The options of ``perfstudy run`` that the chosen executor takes (one-line errors for
    those it does not)."""
    opts: dict = {}
    if args.workers is not None:
        if args.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {args.workers}")
        opts["workers"] = args.workers
    if args.pack is not None:
        opts["pack"] = studies.parse_pack(args.pack, "--pack") or False
    if args.compile:
        opts["compile"] = True
    if args.checkpoint_every is not None:
        if not args.checkpoint_every >= 0:
            raise UsageError(f"--checkpoint-every must be >= 0 seconds, got "
                             f"{args.checkpoint_every:g}")
        opts["checkpoint_every_s"] = args.checkpoint_every
    if args.address is not None:
        opts["address"] = args.address
    if args.cpus_per_run is not None:
        if args.cpus_per_run < 1:
            raise UsageError(f"--cpus-per-run must be >= 1, got {args.cpus_per_run}")
        opts["cpus_per_run"] = args.cpus_per_run
    takes = OPTIONS[args.executor]
    for name, flag in FLAGS.items():
        if name in opts and name not in takes:
            raise UsageError(f"{flag} does not apply to --executor {args.executor} (it "
                             f"applies to {', '.join(e for e, o in OPTIONS.items() if name in o)})")
    return opts


# which options each executor takes, and their flags
OPTIONS = {"local": {"pack", "compile", "checkpoint_every_s"},
           "pool": {"workers", "checkpoint_every_s"},
           "ray": {"pack", "compile", "checkpoint_every_s", "address", "cpus_per_run"}}
FLAGS = {"workers": "--workers", "pack": "--pack", "compile": "--compile",
         "checkpoint_every_s": "--checkpoint-every", "address": "--address",
         "cpus_per_run": "--cpus-per-run"}


def _say():
    return sys.stderr if not sys.stdout.isatty() else sys.stdout


def _announce(study, p, args) -> bool:
    """Say what the run will do; False when there is nothing to train."""
    say = _say()
    if p.reclaimed:
        print(f"{p.reclaimed} run(s) killed mid-way earlier will be redone", file=say)
    skipped = f"{len(p.done)} already done (skipped)"
    if p.need_gpu:
        where = "the Ray cluster" if args.executor == "ray" else "this machine"
        skipped += (f", {len(p.need_gpu)} need a CUDA GPU, which {where} lacks (left pending "
                    "for a machine that has one)")
    if p.failed:
        skipped += f", {len(p.failed)} failed before (skipped; --retry-failed redoes them)"
    if not p.todo:
        print(f"study {study.name}: nothing to train — {skipped} of {p.total} runs, "
              f"in {args.db}", file=say)
        return False
    find_data(p.todo, args.data_dir)
    print(f"study {study.name}: {p.total} runs; {skipped}; {len(p.todo)} to run "
          f"-> {args.db}", file=say)
    return True


def _done_in(db: str, runs) -> set[str]:
    """The keys of ``runs`` already done in the store ``db`` (none if there is no store yet);
    read-only."""
    if not Path(db).exists():
        return set()
    status = Store(db, create=False).status_of(list({r.key for r in runs}))
    return {k for k, v in status.items() if v == "done"}


def _dry_run(study, runs, done: set[str], db: str) -> int:
    rows = [{"experiment": r.experiment, "key": r.key, **r.config.to_dict()} for r in runs]
    by_exp = Counter(r.experiment for r in runs)
    for exp in study.experiments:
        if exp.name in by_exp:
            sel = [row for row in rows if row["experiment"] == exp.name]
            _print_rows(f"{exp.name} ({exp.kind}): {len(sel)} runs", sel)
    unique = len({r.key for r in runs})
    print(f"{unique} runs in {len(by_exp)} experiment(s) of study {study.name}"
          + (f" ({len(runs) - unique} shared between experiments)" if unique < len(runs)
             else "")
          + (f"; {len(done)} already done in {db}, {unique - len(done)} to run" if done
             else ""))
    return 0


def _gpu_plan(runs, done: set[str], args) -> int:
    from perfstudy.config import check_range
    from perfstudy.study import gpu_plan, schedule
    from perfstudy.study.executors.ray_cluster import on_gpu

    memory = 139.0 if args.gpu_memory is None else args.gpu_memory
    check_range("--gpus", args.gpus, low=1, high=1024)
    check_range("--gpu-memory", memory, low=0, high=1e4, low_open=True)
    timings = []
    for db in args.timings or ():
        try:
            rows = Store(db, create=False).rows()
        except UsageError as e:
            raise UsageError(f"--timings: {str(e).split(' (')[0]}") from None
        if not gpu_plan.measured_rates(rows):
            raise UsageError(f"--timings {db}: no finished GPU runs to take times from")
        timings += rows
    rates = gpu_plan.measured_rates(timings)
    gpu_runs = [r for r in runs if on_gpu(r.config, True) and r.key not in done]
    if not gpu_runs:
        raise UsageError("no run of this selection trains on a GPU" if not done else
                         f"every GPU run of this selection is already done in {args.db}")
    units = schedule.units(gpu_runs, None, int(memory * 2**30))
    slots = gpu_plan.plan_gpus(units, args.gpus, rates)
    timed = all(s.seconds is not None for s in slots)
    rows = [[s.gpu, s.unit[0].experiment, _unit_label(s.unit), f"{s.work / 1e15:.1f}",
             "–" if s.seconds is None else _seconds(s.seconds) + ("" if s.measured_rate else " ~"),
             "–" if s.ends is None else f"{s.ends:.0f}"]
            for s in sorted(slots, key=lambda s: s.gpu)]
    skipped = f", {sum(on_gpu(r.config, True) for r in runs) - len(gpu_runs)} already done in " \
        f"{args.db} left out" if done else ""
    print_table(f"GPU plan: {len(gpu_runs)} runs{skipped}, in {len(slots)} units on "
                f"{args.gpus} GPU(s) of {memory:g} GiB",
                ["GPU", "experiment", "unit", "work", "est. s", "GPU done at s"], rows)
    print("work: the cost model's training FLOPs (PFLOP), a pack of k runs counted as one "
          f"run x k^{schedule.PACK_SCALING} (packed runs share the GPU)")
    if timed:
        used = {s.gpu for s in slots}
        wall = max(s.ends for s in slots)
        busy = sum(s.seconds for s in slots) / (args.gpus * wall)
        print(f"estimated GPU wall time: {wall:.0f} s on {args.gpus} GPU(s) ({len(used)} with "
              f"work; the GPUs busy {100 * busy:.0f} % of it), from the times measured in "
              f"{', '.join(args.timings)} ('~': none measured like it; the same model's or all "
              "models' median rate); CPU runs train beside it")
    else:
        print("work only: --timings DB (a store of earlier GPU runs) turns it into seconds")
    return 0


def _seconds(s: float) -> str:
    return f"{s:.1f}" if s < 10 else f"{s:.0f}"


def _unit_label(unit) -> str:
    cfg = unit[0].config
    what = " ".join(str(v) for v in (getattr(cfg, "model", None) or getattr(cfg, "kernel", ""),
                                     f"b{cfg.batch_size}" if hasattr(cfg, "batch_size") else "")
                    if v)
    return f"pack of {len(unit)} {what}" if len(unit) > 1 else f"{what} · {unit[0].key}"


def _print_rows(title: str, rows: list[dict]) -> None:
    cols = varying(rows, keep=("key",)) if len(rows) > 1 else columns(rows)
    cols = [c for c in cols if c != "experiment"]
    print_table(title, cols, ([r.get(c) for c in cols] for r in rows))


def _duration(s: float) -> str:
    m, s = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def cmd_merge(args) -> int:
    for src in args.sources:  # every source checked before the target is created or changed
        source = Store(src, create=False)
        source.rows()
        source.close()
    created = not Path(args.db).exists()
    store = Store(args.db)
    try:
        for src in args.sources:
            n = store.merge(src)
            print(f"{src} -> {args.db}: {n['added']} run(s) added, {n['completed']} completed "
                  f"(done there, not here), {n['kept']} done in both (kept {args.db}'s)")
    except BaseException:
        store.close()
        if created:  # a failed merge leaves no empty store behind
            for suffix in ("", "-wal", "-shm"):
                Path(args.db + suffix).unlink(missing_ok=True)
        raise
    done = sum(r.status == "done" for r in store.rows())
    print(f"{args.db}: {done} run(s) done")
    return 0


def _share_of_wall(row) -> float:
    """A done run's seconds of wall time, its pack's split evenly when it trained in one (each
    packed run's own span is the whole pack's)."""
    pack = (row.result.extra.get("pack_size") if row.result else None) or 1
    return row.seconds / pack


def cmd_status(args) -> int:
    store = Store(args.db, create=False)
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for study in store.studies():
        for row in store.rows(study=study):
            for exp in row.experiments:
                groups[(study, exp)].append(row)
    report = []
    gpu_here = _nvidia_gpu_here()
    for (study, exp), rows in groups.items():
        counts = Counter(r.status for r in rows)
        secs = [_share_of_wall(r) for r in rows if r.status == "done" and r.seconds is not None]
        waiting = [r for r in rows if r.status in ("pending", "interrupted")]
        need_gpu = 0 if gpu_here else sum(r.config.get("device") == "cuda" for r in waiting)
        left = len(waiting) + counts["running"] - need_gpu
        eta = sum(secs) / len(secs) * left if secs and left else (0.0 if not left else None)
        report.append({"study": study, "experiment": exp, "runs": len(rows),
                       **{s: counts[s] for s in STATUSES}, "eta_s": eta,
                       "need_gpu": need_gpu})
    flight = _in_flight(store.rows(status="running"))
    if args.json:
        print_json({"experiments": report, "in_flight": flight})
        return 0
    print_table(f"{args.db}", ["study", "experiment", "runs", *STATUSES, "ETA"],
                ([r["study"], r["experiment"], r["runs"], *(r[s] for s in STATUSES), _eta(r)]
                 for r in report))
    if flight:
        print_table("in flight", ["where", "runs", "experiments", "running for"],
                    ([f["where"], f["runs"], ", ".join(f["experiments"]),
                      _duration(f["seconds"])] for f in flight))
    return 0


def _eta(r: dict) -> str:
    eta = "–" if r["eta_s"] is None else _duration(r["eta_s"])
    return eta + (f" (+{r['need_gpu']} wait for a GPU)" if r["need_gpu"] else "")


def _nvidia_gpu_here() -> bool:
    """Whether this machine has an NVIDIA GPU, read without importing torch: pending CUDA runs
    on a machine without one wait for another machine and get no ETA here."""
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()


def _in_flight(rows) -> list[dict]:
    """Running runs by where they train (a Ray node and device; else the claiming host)."""
    by_where: dict[str, list] = defaultdict(list)
    for r in rows:
        by_where[r.placement or f"{r.host} (pid {r.pid})"].append(r)
    now = time.time()
    return [{"where": where, "runs": len(rs),
             "experiments": sorted({e for r in rs for e in r.experiments}),
             "seconds": now - min(r.started_at or now for r in rs)}
            for where, rs in sorted(by_where.items())]


def cmd_runs(args) -> int:
    store = Store(args.db, create=False)
    filters = studies.parse_assignments(args.filter, "--filter")
    rows = [flatten(r) for r in store.rows()]
    every = columns(rows)
    for k in filters:
        if rows and k not in every:
            hint = " (the experiments a run belongs to: experiments=NAME)" if k == \
                "experiment" else ""
            raise UsageError(f"--filter: no column {k!r}{hint}; the runs have: "
                             f"{', '.join(every)}")
    rows = [r for r in rows if all(_match(r.get(k), v) for k, v in filters.items())]
    cols = _columns(args.columns, rows, args.format)
    rows = [{c: r.get(c) for c in cols} for r in rows]
    if args.format == "json":
        print_json(rows)
    elif args.format == "csv":
        w = csv.DictWriter(sys.stdout, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    elif rows:
        print_table(f"{len(rows)} runs in {args.db}", cols, ([r[c] for c in cols] for r in rows))
    else:
        print("no runs")
    return 0


# what the runs table shows first: which run, how it went, what it measured
SHORT = ("key", "experiments", "status")
MEASURED = ("test_acc", "best_epoch", "train_ms", "images_per_s", "n_support", "error")


def _columns(wanted: str | None, rows: list[dict], fmt: str) -> list[str]:
    every = columns(rows)
    if wanted == "all" or (wanted is None and fmt != "table"):
        return every
    if wanted is None:  # the keys that differ between the rows, then a few results
        config = [c for c in varying(rows, keep=()) if c in _CONFIG_KEYS]
        return [*SHORT, *config, *(m for m in MEASURED
                                   if any(r.get(m) is not None for r in rows))]
    cols = [c.strip() for c in wanted.split(",") if c.strip()]
    unknown = [c for c in cols if c not in every]
    if unknown and rows:
        raise UsageError(f"--columns: no column {unknown[0]!r}; the runs have: "
                         f"{', '.join(every)}")
    return cols


_CONFIG_KEYS = {f for cls in CONFIGS.values() for f in cls.field_names()}


def _match(value, wanted) -> bool:
    if isinstance(wanted, str) and isinstance(value, str) and " " in value:
        return wanted in value.split()  # the experiments column lists several names
    return studies._equal(value, wanted)

