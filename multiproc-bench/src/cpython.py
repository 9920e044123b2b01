"""CPython multiprocessing: Process(target=noop).start(); join().

Run by multiproc-bench (src/cpython.rs) as
    python3 cpython.py WARMUP METHOD=N [METHOD=N ...]
Prints one JSON object per start method on stdout:
    {"name": "process/start_join/<method>", "samples_us": [...]}
and notes on stderr. Timing as in shared/baselines/py_mp.py: from the
Process() call to join() returning, perf_counter_ns.

Top-level imports are minimal on purpose: spawn and (in 3.11) forkserver
children re-run this file as __mp_main__, so every import here would be
counted in their start time.
"""
import sys
import time
import multiprocessing as mp


def noop():
    pass


def start_join(ctx):
    t0 = time.perf_counter_ns()
    p = ctx.Process(target=noop)
    p.start()
    p.join()
    dt = (time.perf_counter_ns() - t0) / 1e3
    if p.exitcode != 0:
        raise SystemExit(f"child exited with {p.exitcode}")
    return dt


def main():
    import json

    warmup = int(sys.argv[1])
    for spec in sys.argv[2:]:
        method, n = spec.split("=")
        if method not in mp.get_all_start_methods():
            print(f"cpython: start method {method} not available, skipped", file=sys.stderr)
            continue
        ctx = mp.get_context(method)
        for _ in range(warmup):
            start_join(ctx)
        samples = [start_join(ctx) for _ in range(int(n))]
        rec = {"name": "process/start_join/" + method, "samples_us": samples}
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
