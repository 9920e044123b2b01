"""CPython multiprocessing, measured for multiproc-bench (src/cpython.rs).

Three modes (the third, `python3 cpython.py shm WARMUP N MIB`, is run by
src/shm_rows.rs):

    python3 cpython.py start_join WARMUP METHOD=N [METHOD=N ...]

Process(target=noop).start(); join() per start method. Prints one JSON
object per method on stdout:
    {"name": "process/start_join/<method>", "samples_us": [...]}
Timing as in shared/baselines/py_mp.py: from the Process() call to join()
returning, perf_counter_ns.

    python3 cpython.py channels CONFIG_JSON

Pipe and Queue rows, each with its own child, by py_mp.py's methods (A3,
A4): CONFIG_JSON is {"warmup": W, "samples": N, "rows": [ROW, ...]} with
ROW = {"name", "kind", "method", "size", "count", "pin"}:

  pipe_oneway    Pipe() (a socket pair); the parent send_bytes `count`
                 messages of `size` bytes, then b""; the child (pipe_sink)
                 answers the byte count on a Pipe(duplex=False). A sample
                 is the time of one such repetition, in microseconds.
  pipe_pingpong  Pipe(); the parent send_bytes(b"x") then recv_bytes() the
                 echo (pipe_echo), `count` round trips per sample, each
                 timed; a sample is their median. With `pin` (a CPU), the
                 child and (after starting it) the parent are pinned to it.
  queue_echo     two Queue(); the parent puts `count` messages of `size`
                 bytes into the first, then gets `count` from the second;
                 the child (q_echo) moves each across. A sample is the time
                 of one repetition.
  queue_oneway   Queue(); the parent puts `count` messages of `size`
                 bytes, then b""; the child (q_sink) answers the byte count
                 on a second Queue. A sample is the time of one repetition.

and the pool rows (src/pool_rows.rs), where a sample is one whole call:

  pool_map        Pool(2).map(square, range(count)), chunksize `size` (0:
                  automatic), one pool for every sample.
  executor_map    concurrent.futures.ProcessPoolExecutor(2).map(square,
                  range(count)), chunksize `size` (0: its default, 1).
  pool_lifecycle  Pool(2) created, map(square, range(count)), close, join.
  pool_map_bytes  Pool(2).map(blen, args) of `count` distinct bytes objects
                  of `size` bytes, automatic chunksize.

Every row does W untimed repetitions first. Prints
    {"name": NAME, "samples_us": [...]}
per row, and notes on stderr.

Top-level imports are minimal on purpose: spawn and (in 3.11) forkserver
children re-run this file as __mp_main__, so every import here would be
counted in their start time.
"""
import sys
import time
import multiprocessing as mp

now = time.perf_counter_ns


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


# --------------------------------------------------------------------------
# channel children (as in shared/baselines/py_mp.py)
# --------------------------------------------------------------------------

def pipe_sink(rconn, ack):
    """Consume send_bytes messages; on b'' send an ack; stop on b'Q'."""
    total = 0
    while True:
        b = rconn.recv_bytes()
        if not b:
            ack.send_bytes(total.to_bytes(8, "little"))
            total = 0
        elif b == b"Q":
            break
        else:
            total += len(b)


def pipe_echo(rconn, wconn, cpu=None):
    """Echo messages back until b'Q' (optionally pinned to one CPU)."""
    if cpu is not None:
        import os
        os.sched_setaffinity(0, {cpu})
    while True:
        b = rconn.recv_bytes()
        if b == b"Q":
            break
        wconn.send_bytes(b)


def q_echo(qin, qout):
    """Echo every message from qin to qout until None."""
    while True:
        m = qin.get()
        if m is None:
            break
        qout.put(m)


def q_sink(qin, qout):
    """Consume messages; on b'' report the byte count on qout; stop on None."""
    total = 0
    while True:
        m = qin.get()
        if m is None:
            break
        if not m:
            qout.put(total)
            total = 0
        else:
            total += len(m)


# --------------------------------------------------------------------------
# channel rows
# --------------------------------------------------------------------------

def median(v):
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def pipe_oneway(ctx, row, warmup, samples):
    size, count = row["size"], row["count"]
    rd, wr = ctx.Pipe()
    ack_r, ack_w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=pipe_sink, args=(rd, ack_w))
    p.start()
    payload = b"z" * size
    out = []
    for i in range(warmup + samples):
        t0 = now()
        for _ in range(count):
            wr.send_bytes(payload)
        wr.send_bytes(b"")
        got = int.from_bytes(ack_r.recv_bytes(), "little")
        dt = (now() - t0) / 1e3
        if got != size * count:
            raise SystemExit(f"{row['name']}: the child got {got} bytes, {size * count} were sent")
        if i >= warmup:
            out.append(dt)
    wr.send_bytes(b"Q")
    p.join()
    return out


def pipe_pingpong(ctx, row, warmup, samples):
    import os

    pin, rounds = row.get("pin"), row["count"]
    a, b = ctx.Pipe()
    p = ctx.Process(target=pipe_echo, args=(b, b, pin))
    p.start()
    # Pinned after the start, so that a fork server started now is not.
    old = os.sched_getaffinity(0)
    if pin is not None:
        os.sched_setaffinity(0, {pin})
    out = []
    try:
        one = b"x"
        for i in range(warmup + samples):
            lat = []
            for _ in range(rounds):
                t0 = now()
                a.send_bytes(one)
                a.recv_bytes()
                lat.append(now() - t0)
            if i >= warmup:
                out.append(median(lat) / 1e3)
    finally:
        os.sched_setaffinity(0, old)
    a.send_bytes(b"Q")
    p.join()
    return out


def queue_echo(ctx, row, warmup, samples):
    size, count = row["size"], row["count"]
    qin, qout = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=q_echo, args=(qin, qout))
    p.start()
    msg = b"x" * size
    out = []
    for i in range(warmup + samples):
        t0 = now()
        for _ in range(count):
            qin.put(msg)
        for _ in range(count):
            qout.get()
        dt = (now() - t0) / 1e3
        if i >= warmup:
            out.append(dt)
    qin.put(None)
    p.join()
    return out


def queue_oneway(ctx, row, warmup, samples):
    size, count = row["size"], row["count"]
    qin, qout = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=q_sink, args=(qin, qout))
    p.start()
    big = b"y" * size
    out = []
    for i in range(warmup + samples):
        t0 = now()
        for _ in range(count):
            qin.put(big)
        qin.put(b"")
        got = qout.get()
        dt = (now() - t0) / 1e3
        if got != size * count:
            raise SystemExit(f"{row['name']}: the child got {got} bytes, {size * count} were sent")
        if i >= warmup:
            out.append(dt)
    qin.put(None)
    p.join()
    return out


def square(x):
    return x * x


def pool_map(ctx, row, warmup, samples):
    """Pool(2).map(square, range(count)); chunksize `size`, 0: automatic."""
    n, chunk = row["count"], row["size"] or None
    out = []
    with ctx.Pool(2) as pool:
        for i in range(warmup + samples):
            t0 = time.perf_counter_ns()
            res = pool.map(square, range(n), chunk)
            dt = (time.perf_counter_ns() - t0) / 1e3
            if len(res) != n or res[-1] != (n - 1) * (n - 1):
                raise SystemExit("pool map: wrong result")
            if i >= warmup:
                out.append(dt)
    return out


def executor_map(ctx, row, warmup, samples):
    """ProcessPoolExecutor(2).map(square, range(count)); chunksize `size`,
    0: its default (1). One executor for every sample, as pool_map."""
    from concurrent.futures import ProcessPoolExecutor

    n, chunk = row["count"], row["size"] or 1
    out = []
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        for i in range(warmup + samples):
            t0 = time.perf_counter_ns()
            res = list(ex.map(square, range(n), chunksize=chunk))
            dt = (time.perf_counter_ns() - t0) / 1e3
            if len(res) != n or res[-1] != (n - 1) * (n - 1):
                raise SystemExit("executor map: wrong result")
            if i >= warmup:
                out.append(dt)
    return out


def pool_lifecycle(ctx, row, warmup, samples):
    """A whole Pool(2): created, map(square, range(count)), close, join."""
    n = row["count"]
    out = []
    for i in range(warmup + samples):
        t0 = time.perf_counter_ns()
        pool = ctx.Pool(2)
        res = pool.map(square, range(n))
        pool.close()
        pool.join()
        dt = (time.perf_counter_ns() - t0) / 1e3
        if res != [x * x for x in range(n)]:
            raise SystemExit("pool lifecycle: wrong result")
        if i >= warmup:
            out.append(dt)
    return out


def blen(b):
    return len(b)


def pool_map_bytes(ctx, row, warmup, samples):
    """Pool(2).map(blen, args): `count` bytes objects of `size` bytes,
    automatic chunk size. Each object is distinct: pickle would send a
    repeated one once per chunk."""
    size, n = row["size"], row["count"]
    args = [bytes([i % 256]) * size for i in range(n)]
    out = []
    with ctx.Pool(2) as pool:
        for i in range(warmup + samples):
            t0 = time.perf_counter_ns()
            res = pool.map(blen, args)
            dt = (time.perf_counter_ns() - t0) / 1e3
            if res != [size] * n:
                raise SystemExit("pool map of bytes: wrong result")
            if i >= warmup:
                out.append(dt)
    return out


KINDS = {
    "pool_map": pool_map,
    "executor_map": executor_map,
    "pool_lifecycle": pool_lifecycle,
    "pool_map_bytes": pool_map_bytes,
    "pipe_oneway": pipe_oneway,
    "pipe_pingpong": pipe_pingpong,
    "queue_echo": queue_echo,
    "queue_oneway": queue_oneway,
}


# --------------------------------------------------------------------------
# modes
# --------------------------------------------------------------------------

def main_start_join(args):
    import json

    warmup = int(args[0])
    for spec in args[1:]:
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


def main_channels(args):
    import json

    cfg = json.loads(args[0])
    warmup, samples = cfg["warmup"], cfg["samples"]
    for row in cfg["rows"]:
        method = row["method"]
        if method not in mp.get_all_start_methods():
            print(f"cpython: start method {method} not available, {row['name']} skipped", file=sys.stderr)
            continue
        out = KINDS[row["kind"]](mp.get_context(method), row, warmup, samples)
        print(json.dumps({"name": row["name"], "samples_us": out}), flush=True)


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


def main_shm(args):
    """python3 cpython.py shm WARMUP N MIB: spawn method."""
    import json

    warmup, n, mib = (int(a) for a in args[:3])
    ctx = mp.get_context("spawn")
    for _ in range(warmup):
        shm_round(ctx, mib * MIB)
    samples = [shm_round(ctx, mib * MIB) for _ in range(n)]
    rec = {"name": f"shm/{mib}MiB_fresh/spawn", "samples_us": samples}
    print(json.dumps(rec), flush=True)


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "start_join":
        main_start_join(args)
    elif mode == "shm":
        return main_shm(args)
    elif mode == "channels":
        main_channels(args)
    else:
        raise SystemExit(f"cpython.py: unknown mode {mode!r}")


if __name__ == "__main__":
    main()
