"""Sessions and steps per second of an llm_gym env served through OpenEnv, on loopback.

A server process (``llm_gym.integrations.openenv_server.create_app`` under uvicorn, one worker,
as ``llm-gym serve`` runs it) serves ``llm_gym/Arithmetic-v0`` as text; this process drives
``--sessions`` concurrent WebSocket sessions with OpenEnv's own async ``GenericEnvClient`` on one
event loop. Each session loops reset + step (one reply ends an Arithmetic episode), so every
request is a real env reset or step. Two settings of the env's step: 0 s, and 10 ms
(``step_delay_s``: each step sleeps in its session's thread, as a slow grader or tool would).

Reported per setting: requests/s on the wall clock, and requests per second of the *server's*
CPU time (psutil) — the per-core rate, since a uvicorn worker is one process bound by the GIL.
The client shares the machine; on a busy machine the wall rates are lower bounds. Then
``--open`` sessions are opened at once (each with its own env, all reset), to show how many one
server process holds and how fast it opens them.

OpenEnv's scaling tutorial reports 256 sessions per core and 932 requests/s on 8 cores.

    nice -n 5 python benchmarks/openenv_serving.py --seconds 5 --sessions 1 16 64 --open 256
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psutil  # noqa: E402

ENV_ID = "llm_gym/Arithmetic-v0"


def run_server(port: int, max_sessions: int, step_delay_s: float) -> None:
    """The server process: OpenEnv's app for ``ENV_ID`` under uvicorn (one worker)."""
    import uvicorn

    import llm_gym  # noqa: F401
    from llm_gym.integrations.openenv_server import create_app, quiet_closed_sockets

    quiet_closed_sockets()
    app = create_app(ENV_ID, max_sessions=max_sessions, step_delay_s=step_delay_s)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_until_up(url: str, client_class: type, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        client = client_class(base_url=url)
        try:
            await client.connect()
            await client.close()
            return
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


async def drive(url: str, client_class: type, sessions: int, seconds: float) -> int:
    """Requests answered by ``sessions`` concurrent sessions in ``seconds`` (after connecting)."""
    clients = [client_class(base_url=url) for _ in range(sessions)]
    await asyncio.gather(*(c.connect() for c in clients))
    stop = time.monotonic() + seconds
    done = [0]

    async def loop(client: object) -> None:
        while time.monotonic() < stop:
            await client.reset()
            await client.step({"message": "0"})
            done[0] += 2

    await asyncio.gather(*(loop(c) for c in clients))
    await asyncio.gather(*(c.close() for c in clients))
    return done[0]


async def open_many(url: str, client_class: type, sessions: int) -> float:
    """Seconds to open ``sessions`` sessions at once and reset each one's env."""
    start = time.perf_counter()
    clients = [client_class(base_url=url, message_timeout_s=300) for _ in range(sessions)]
    await asyncio.gather(*(c.connect() for c in clients))
    await asyncio.gather(*(c.reset() for c in clients))
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(c.close() for c in clients))
    return elapsed


def bench_delay(delay: float, args: argparse.Namespace, client_class: type) -> list[tuple]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    max_sessions = max(max(args.sessions), args.open)
    proc = multiprocessing.get_context("spawn").Process(
        target=run_server, args=(port, max_sessions, delay), daemon=True)
    proc.start()
    rows = []
    try:
        asyncio.run(wait_until_up(url, client_class))
        server = psutil.Process(proc.pid)
        for sessions in args.sessions:
            cpu0, wall0 = sum(server.cpu_times()[:2]), time.perf_counter()
            requests = asyncio.run(drive(url, client_class, sessions, args.seconds))
            cpu, wall = sum(server.cpu_times()[:2]) - cpu0, time.perf_counter() - wall0
            rows.append((f"{delay * 1000:g} ms", sessions, requests, requests / wall,
                         requests / max(cpu, 1e-9)))
        if delay == 0 and args.open:
            rss0 = server.memory_info().rss
            opened = asyncio.run(open_many(url, client_class, args.open))
            rss = (server.memory_info().rss - rss0) / args.open / 2**20
            print(f"opened {args.open} sessions (env built and reset in each) in {opened:.1f} s "
                  f"({args.open / opened:.0f} sessions/s); ~{rss:.2f} MiB per session")
    finally:
        proc.terminate()
        proc.join(timeout=30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="run time per row")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--delays-ms", type=float, nargs="+", default=[0.0, 10.0])
    parser.add_argument("--open", type=int, default=256, help="sessions opened at once (0: skip)")
    args = parser.parse_args()
    from openenv.core import GenericEnvClient

    print(f"{ENV_ID} on loopback, one uvicorn worker; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at start")
    rows = []
    for delay_ms in args.delays_ms:
        rows += bench_delay(delay_ms / 1000, args, GenericEnvClient)
    print(f"{'step':>6} {'sessions':>8} {'requests':>9} {'req/s wall':>11} "
          f"{'req/s per server CPU-s':>23}")
    for delay, sessions, requests, wall_rate, cpu_rate in rows:
        print(f"{delay:>6} {sessions:>8} {requests:>9} {wall_rate:>11.0f} {cpu_rate:>23.0f}")
    print("OpenEnv's scaling tutorial: 256 sessions per core, 932 requests/s on 8 cores")


if __name__ == "__main__":
    main()
