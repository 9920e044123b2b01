"""CPython multiprocessing: Process(target=noop).start(); join().

Run by multiproc-bench (src/cpython.rs) as
    python3 cpython.py WARMUP METHOD=N [METHOD=N ...]
or (src/shm_rows.rs) as
    python3 cpython.py shm WARMUP N MIB
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


MIB = 1 << 20


def shm_child(name, size):
    """Attach by name, fill with 0x01 in 1 MiB slice assignments."""
    from multiprocessing import shared_memory
    shm = shared_memory.SharedMemory(name=name)
    pat = b"\x01" * MIB
    buf = shm.buf
    for off in range(0, size, MIB):
        buf[off:off + MIB] = pat
    del buf
    shm.close()


def shm_round(ctx, size):
    """SharedMemory(create=True) + child writes it all + parent crc32, as
    in shared/baselines/py_mp.py; close and unlink are not timed."""
    import zlib
    from multiprocessing import shared_memory
    t0 = time.perf_counter_ns()
    shm = shared_memory.SharedMemory(create=True, size=size)
    p = ctx.Process(target=shm_child, args=(shm.name, size))
    p.start()
    p.join()
    crc = zlib.crc32(shm.buf)
    dt = (time.perf_counter_ns() - t0) / 1e3
    shm.close()
    shm.unlink()
    if p.exitcode != 0 or crc == 0:
        raise SystemExit(f"shm child exited with {p.exitcode}")
    return dt


def main_shm():
    """python3 cpython.py shm WARMUP N MIB: spawn method."""
    import json

    warmup, n, mib = (int(a) for a in sys.argv[2:5])
    ctx = mp.get_context("spawn")
    for _ in range(warmup):
        shm_round(ctx, mib * MIB)
    samples = [shm_round(ctx, mib * MIB) for _ in range(n)]
    rec = {"name": f"shm/{mib}MiB_fresh/spawn", "samples_us": samples}
    print(json.dumps(rec), flush=True)


def main():
    import json

    if sys.argv[1] == "shm":
        return main_shm()
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
