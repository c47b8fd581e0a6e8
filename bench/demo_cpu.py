"""Where the CPU of `dp demo` goes, against a trivial spark-submit: each process of the run (the
Dagster process, the Spark JVM, the job's Python driver, its Python workers, PostgreSQL) and, inside
the JVM, its threads by kind (the JIT's compiler threads, the tables' threads, the executor's tasks),
sampled from /proc while each runs, after a warm-up demo.

    uv run python -m bench.demo_cpu [--repeat 2]

On two cores the demo is CPU-bound, so its wall time follows its CPU seconds; the ratios say which
part grows with the run's work and which is the fixed cost every Spark application pays.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

from bench.common import machine, median, table, workdir
from bench.demo import commands

TICK = os.sysconf("SC_CLK_TCK")
POLL_SECONDS = 0.2


def kind(cmdline: str) -> str:
    """What a process of the run is, from its command line."""
    if "org.apache.spark.deploy.SparkSubmit" in cmdline:
        return "Spark JVM"
    if "pyspark.daemon" in cmdline or "pyspark.worker" in cmdline:
        return "Python workers"
    if "run_pipeline.py" in cmdline or "trivial.py" in cmdline:
        return "the job's Python driver"
    if "dp_assets.cli" in cmdline:
        return "Dagster process (dp)"
    if "postgres" in cmdline:
        return "PostgreSQL"
    return "other"


def thread_kind(comm: str) -> str:
    """A JVM thread's kind, from its name (``/proc/<pid>/task/<tid>/comm``, 15 characters)."""
    if "CompilerThre" in comm:
        return "JVM: JIT compiler threads"
    if comm.startswith("Thread-"):
        return "JVM: the job's threads (planning, catalog, py4j)"
    if comm.startswith("Executor task"):
        return "JVM: executor tasks"
    if comm.startswith(("GC Thread", "G1 ")):
        return "JVM: garbage collection"
    return "JVM: other threads"


def cpu_seconds(stat: str) -> float:
    """utime + stime of a ``/proc/.../stat`` line."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:  # the process or thread ended between listing and reading
        return None


def sampled(argv: list[str], env: dict[str, str]) -> tuple[float, Counter[str]]:
    """Run ``argv`` to its end; its wall seconds and the CPU seconds of it and its descendants, by
    process kind and, for the JVM, by thread kind (each process's last reading before it ended)."""
    started = time.perf_counter()
    root = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tree, processes, threads = {root.pid}, {}, {}
    while root.poll() is None:
        stats = {}  # pid -> (its parent's pid, its stat line)
        for pid in filter(str.isdigit, os.listdir("/proc")):
            stat = read(f"/proc/{pid}/stat")
            if stat is not None:
                stats[int(pid)] = (int(stat.rsplit(")", 1)[1].split()[1]), stat)
        for pid, (parent, stat) in stats.items():
            if parent in tree:
                tree.add(pid)
            if pid not in tree:
                continue
            cmdline = (read(f"/proc/{pid}/cmdline") or "").replace("\0", " ")
            label = kind(cmdline) if cmdline.strip() else processes.get(pid, ("other", 0.0))[0]
            processes[pid] = (label, cpu_seconds(stat))
            if label == "Spark JVM":
                for tid in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
                    task = read(f"/proc/{pid}/task/{tid}/stat")
                    if task is not None:
                        threads[tid] = (
                            thread_kind(task[task.index("(") + 1 : task.rindex(")")]),
                            cpu_seconds(task),
                        )
        time.sleep(POLL_SECONDS)
    assert root.returncode == 0, f"{argv[-1]} exited with {root.returncode}"
    totals: Counter[str] = Counter()
    for label, seconds in [*processes.values(), *threads.values()]:
        totals[label] += seconds
    return time.perf_counter() - started, totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    run = commands(workdir("demo_cpu"))
    sampled(run.demo, run.demo_env)  # warm-up: page cache, the PostgreSQL data folder, the Derby catalog
    demos, trivials = [], []
    for n in range(args.repeat):
        trivials.append(sampled(run.trivial, run.trivial_env))
        demos.append(sampled(run.demo, run.demo_env))
        print(f"round {n + 1}: trivial spark-submit {trivials[-1][0]:.1f} s, dp demo {demos[-1][0]:.1f} s")
    labels = sorted(
        {label for _, totals in demos + trivials for label in totals}, key=lambda k: -demos[0][1][k]
    )
    rows = []
    for label in labels:
        demo_cpu = median([totals[label] for _, totals in demos])
        trivial_cpu = median([totals[label] for _, totals in trivials])
        if demo_cpu >= 0.1 or trivial_cpu >= 0.1:
            ratio = f"{demo_cpu / trivial_cpu:.1f}" if trivial_cpu >= 0.1 else "-"
            rows.append([label, trivial_cpu, demo_cpu, ratio])
    processes = [label for label in labels if not label.startswith("JVM: ")]
    demo_total = median([sum(totals[k] for k in processes) for _, totals in demos])
    trivial_total = median([sum(totals[k] for k in processes) for _, totals in trivials])
    rows.append(["all processes", trivial_total, demo_total, f"{demo_total / trivial_total:.1f}"])
    rows.append(["wall", median([w for w, _ in trivials]), median([w for w, _ in demos]), "-"])
    print(f"\nCPU seconds of `dp demo` and a trivial spark-submit on {machine()}; median of {args.repeat}")
    print(table(["process, or JVM threads by kind", "trivial spark-submit", "dp demo", "ratio"], rows))


if __name__ == "__main__":
    main()
