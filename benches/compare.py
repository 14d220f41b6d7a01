#!/usr/bin/env python3
"""Python multiprocessing twins of the `compare` runner's measurements.

Prints one JSON object per line: {"name", "median_ns", "p99_ns"}. Run by
`cargo run --release -p benches --bin compare` when python3 is present;
each measurement takes about a second.
"""
import json
import multiprocessing as mp
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import shared_memory

SAMPLES = 60


def report(name, per_op_ns):
    per_op_ns.sort()
    p99 = per_op_ns[min(len(per_op_ns) - 1, int(len(per_op_ns) * 0.99))]
    print(json.dumps({"name": name, "median_ns": statistics.median(per_op_ns), "p99_ns": p99}))
    sys.stdout.flush()


def sample(op, batch):
    out = []
    for _ in range(SAMPLES):
        t = time.perf_counter_ns()
        op(batch)
        out.append((time.perf_counter_ns() - t) / batch)
    return out


def pipe_echo(conn):
    while True:
        v = conn.recv()
        if v is None:
            return
        conn.send(v)


def queue_echo(ping, pong):
    while True:
        v = ping.get()
        if v is None:
            return
        pong.put(v)


def square(x):
    return x * x


def main():
    mp.set_start_method("fork")
    # Pipe round trip
    a, b = mp.Pipe()
    p = mp.Process(target=pipe_echo, args=(b,))
    p.start()

    def pipe_op(n):
        for i in range(n):
            a.send(i)
            a.recv()

    report("python/pipe_rtt", sample(pipe_op, 200))
    a.send(None)
    p.join()

    # Queue round trip
    ping, pong = mp.Queue(), mp.Queue()
    p = mp.Process(target=queue_echo, args=(ping, pong))
    p.start()

    def queue_op(n):
        for i in range(n):
            ping.put(i)
            pong.get()

    report("python/queue_rtt", sample(queue_op, 100))
    ping.put(None)
    p.join()

    lock = mp.Lock()

    def lock_op(n):
        for _ in range(n):
            lock.acquire()
            lock.release()

    report("python/lock_acquire_release", sample(lock_op, 10000))

    v = mp.Value("q", 0)

    def value_op(n):
        for _ in range(n):
            v.value

    report("python/value_get", sample(value_op, 10000))

    with mp.Manager() as m:
        d = m.dict()
        d[1] = 1

        def dict_op(n):
            for _ in range(n):
                d[1]

        report("python/manager_dict_get", sample(dict_op, 50))

        ml = m.Lock()

        def mlock_op(n):
            for _ in range(n):
                ml.acquire()
                ml.release()

        report("python/manager_lock_acquire_release", sample(mlock_op, 20))

        mv = m.Value("q", 0)

        def mvalue_op(n):
            for _ in range(n):
                mv.value

        report("python/manager_value_get", sample(mvalue_op, 50))

    with mp.Pool(2) as pool:
        items = list(range(10000))

        def map_op(n):
            for _ in range(n):
                pool.map(square, items)

        report("python/pool_map_per_item", [x / len(items) for x in sample(map_op, 1)])

    with ProcessPoolExecutor(2) as ex:
        ex.submit(square, 1).result()

        def submit_op(n):
            for _ in range(n):
                ex.submit(square, 1).result()

        report("python/executor_submit_result", sample(submit_op, 20))

    def shm_op(n):
        for _ in range(n):
            s = shared_memory.SharedMemory(create=True, size=4096)
            s.close()
            s.unlink()

    report("python/shared_memory_create_drop", sample(shm_op, 50))


if __name__ == "__main__":
    main()
