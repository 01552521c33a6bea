"""The load generator and the echo floor of bench/serving.py, each run as its own process.

`python bench/loadgen.py _loadgen --port P --path /v1/...` is an asyncio HTTP/1.1 keep-alive
client that sends each request at its scheduled time and measures latency from that time, so a
server that falls behind shows its queue in the figures (no coordinated omission); it prints a
JSON summary with its own lateness and CPU share. `python bench/loadgen.py _echo --port P` (in
the serving environment) is the floor: an echo app on the same Starlette + uvicorn process
model as the servers. Only the standard library is imported at the top.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import signal
import socket
import sys
import time
from pathlib import Path

MAX_CONNECTIONS = 256  # open loop: beyond this a request waits for a connection (and it counts)
REQUEST_TIMEOUT_S = 10.0  # a request slower than this is an error, not a latency
clock = time.perf_counter  # uvloop's loop.time() counts whole milliseconds: too coarse here


# --- load generator (its own process) ----------------------------------------------------


class Conn:
    """One keep-alive HTTP/1.1 connection; `exchange` sends one request, reads one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reusable = True

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        self.reusable = headers.get("connection", "").lower() != "close"
        return status

    def close(self) -> None:
        self.writer.close()


def http_request(port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Recorder:
    """Latencies of successful requests, error counts, and the client's own lateness."""

    def __init__(self) -> None:
        self.ok: list[float] = []
        self.errors: dict[str, int] = {}
        self.lag: list[float] = []  # how late the client itself sent
        self.first = self.last = 0.0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class Pool:
    """Idle keep-alive connections; opens a new one when none is idle, up to a cap."""

    def __init__(self, port: int, cap: int) -> None:
        self.port, self.cap, self.opened = port, cap, 0
        self.idle: asyncio.LifoQueue[Conn] = asyncio.LifoQueue()

    async def warm(self, n: int) -> None:
        for _ in range(n):
            self.opened += 1
            self.idle.put_nowait(await Conn.open(self.port))

    async def get(self) -> Conn:
        if not self.idle.empty() or self.opened >= self.cap:
            return await self.idle.get()
        self.opened += 1
        try:
            return await Conn.open(self.port)
        except BaseException:  # refused, or cancelled by a timeout: no connection was made
            self.opened -= 1
            raise

    def put(self, conn: Conn | None) -> None:
        if conn is None:
            self.opened -= 1
        else:
            self.idle.put_nowait(conn)


async def _one(pool: Pool, request: bytes, due: float, rec: Recorder | None) -> None:
    try:
        conn = await asyncio.wait_for(pool.get(), REQUEST_TIMEOUT_S)
    except (TimeoutError, OSError) as exc:
        conn, status = None, f"connect {type(exc).__name__}"
    else:
        try:
            status = await asyncio.wait_for(conn.exchange(request), REQUEST_TIMEOUT_S)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            status = type(e).__name__
        except TimeoutError:
            status = "timeout"
        if status == 200 and conn.reusable:
            pool.put(conn)
        else:  # a socket in an unknown state is not reused
            conn.close()
            pool.put(None)
    end = clock()
    if rec is None:
        return
    rec.last = max(rec.last, end)
    if status == 200:
        rec.ok.append(end - due)  # from the scheduled time: queueing counts
    else:
        rec.error(str(status))


async def open_loop(pool: Pool, request: bytes, rate: float, duration: float, rec, stop) -> None:
    """Send rate*duration requests, each at its scheduled time, then wait for the answers."""
    loop = asyncio.get_running_loop()
    n = int(rate * duration)
    t0 = clock() + 0.01
    if rec is not None:
        rec.first = t0
    tasks = set()
    for i in range(n):
        if stop.is_set():
            break
        due = t0 + i / rate
        wait = due - clock()
        if wait > 0:
            await asyncio.sleep(wait)
        if rec is not None:
            rec.lag.append(clock() - due)
        task = loop.create_task(_one(pool, request, due, rec))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=2 * REQUEST_TIMEOUT_S)


async def closed_loop(port: int, request: bytes, conns: int, duration: float, rec) -> None:
    """`conns` connections, each sending its next request as soon as the last one is answered."""
    pool = Pool(port, conns)
    await pool.warm(conns)
    rec.first = clock()
    deadline = rec.first + duration

    async def worker() -> None:
        while clock() < deadline:
            await _one(pool, request, clock(), rec)

    await asyncio.gather(*(worker() for _ in range(conns)))


def _pct(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def summarize(rec: Recorder, wall_s: float, cpu_s: float, sent: int) -> dict:
    lat = sorted(rec.ok)
    lag = sorted(rec.lag)
    span = max(rec.last - rec.first, 1e-9)

    def ms(v):
        return None if v is None else round(v * 1000, 3)

    return {
        "sent": sent,
        "ok": len(lat),
        "errors": sum(rec.errors.values()),
        "error_kinds": rec.errors,
        "achieved_rps": round(len(lat) / span, 1),
        "p50_ms": ms(_pct(lat, 0.50)),
        "p90_ms": ms(_pct(lat, 0.90)),
        "p99_ms": ms(_pct(lat, 0.99)),
        "max_ms": ms(lat[-1] if lat else None),
        "send_lag_p99_ms": ms(_pct(lag, 0.99)),
        "client_cpu": round(cpu_s / max(wall_s, 1e-9), 3),
    }


async def _loadgen(args) -> dict:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)  # the canary ends the load when it decides
    request = http_request(args.port, args.path, Path(args.body).read_bytes())
    if args.mode == "closed":
        rec = Recorder()
        cpu0, wall0 = _cpu(), time.perf_counter()
        await closed_loop(args.port, request, args.connections, args.duration, rec)
        return summarize(rec, time.perf_counter() - wall0, _cpu() - cpu0, len(rec.ok))
    pool = Pool(args.port, MAX_CONNECTIONS)
    await pool.warm(min(32, MAX_CONNECTIONS))
    if args.warmup > 0:  # unrecorded: first-request costs and cold caches stay out of the figures
        await open_loop(pool, request, args.rate, args.warmup, None, stop)
    rec = Recorder()
    cpu0, wall0 = _cpu(), time.perf_counter()
    await open_loop(pool, request, args.rate, args.duration, rec, stop)
    return summarize(rec, time.perf_counter() - wall0, _cpu() - cpu0, len(rec.lag))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def loadgen_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="loadgen.py _loadgen")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--body", required=True, help="file holding the JSON body")
    ap.add_argument("--mode", choices=("open", "closed"), default="open")
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args(argv)
    gc.collect()
    gc.freeze()
    gc.disable()  # the client must not pause: a collection would look like server latency
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        print(json.dumps(runner.run(_loadgen(args))))


# --- the echo floor (serving environment) ------------------------------------------------


def echo_main(argv: list[str]) -> None:
    """Starlette on the model server's uvicorn settings, answering every POST with its body."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from mlplatform.serving.process import add_bind_args, serve

    async def echo(request):
        return Response(await request.body(), media_type="application/json")

    async def ready(request):
        return JSONResponse({"ready": True})

    ap = argparse.ArgumentParser(prog="loadgen.py _echo")
    add_bind_args(ap)
    args = ap.parse_args(argv)
    app = Starlette(
        routes=[Route("/ready", ready, methods=["GET"]), Route("/{p:path}", echo, methods=["POST"])]
    )
    serve(app, args.host, args.port)


# --- orchestration -----------------------------------------------------------------------


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_loadgen":
        loadgen_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "_echo":
        echo_main(sys.argv[2:])
    else:
        sys.exit("usage: loadgen.py _loadgen ... | _echo --port P")
