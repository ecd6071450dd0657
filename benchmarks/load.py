"""Bounded load test of ``valle2 serve`` on loopback: throughput, latency and time-to-first-audio.

For each server setting (batched: ``--max-batch``; unbatched: max batch 1) the script
starts ``valle2 serve`` on 127.0.0.1 (or uses ``--url``, which must be a loopback
address), sends ``--requests`` speech requests from 1, 4 and 16 concurrent clients
(each client sends its next request when the previous one has finished), and reports
per level: requests/s, audio seconds generated per second, p50/p95 latency, p50/p95
time to first audio (the requests are streamed, so first audio is the first chunk) and
the count of 5xx responses. Every request is one sentence (from a fixed list of four),
so the work per request is the same at every level. Then six-sentence requests are sent
one at a time, streamed and not, to show when the first audio arrives.

    python benchmarks/load.py --model debug --requests 32 --concurrency 1,4,16 --compare-unbatched

Prints a Markdown table and writes the figures as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlparse

import httpx

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things.",
    "She sells sea shells by the sea shore.",
    "A large fawn jumped quickly over white zinc boxes.",
]
PCM_RATE = 24000  # OpenAI's pcm format: s16le mono at 24 kHz
LONG_TEXT = " ".join(TEXTS + TEXTS[:2])  # six sentences, for time-to-first-audio


@dataclass
class Level:
    setting: str
    concurrency: int
    requests: int
    seconds: float
    throughput_rps: float
    audio_seconds_per_s: float
    latency_p50: float
    latency_p95: float
    ttfa_p50: float
    ttfa_p95: float
    status_5xx: int
    status_other: dict
    decode_batches: int
    server_cpu_s: float | None  # CPU time of the server process (all threads) during the level
    requests_per_cpu_s: float | None  # less sensitive than req/s to other load on a shared machine


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def one_request(client: httpx.AsyncClient, text: str, headers: dict, stream: bool = True) -> tuple[int, float, float, int]:
    """(status, latency, time to first audio, pcm bytes) of one request."""
    body = {"model": "tts-1", "voice": "demo", "input": text, "response_format": "pcm", "stream": stream}
    t0 = time.perf_counter()
    first, size = None, 0
    async with client.stream("POST", "/v1/audio/speech", json=body, headers=headers) as r:
        async for chunk in r.aiter_raw():
            if chunk and first is None:
                first = time.perf_counter() - t0
            size += len(chunk)
    latency = time.perf_counter() - t0
    return r.status_code, latency, first if first is not None else latency, size if r.status_code == 200 else 0


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of process ``pid`` and all its threads (Linux), or None."""
    if pid is None:
        return None
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_level(url: str, setting: str, concurrency: int, n_requests: int, key: str | None,
                    pid: int | None = None) -> Level:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    results = []
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        batches_before = await decode_batches(client)

        async def worker():
            nonlocal next_index
            while next_index < n_requests:
                i = next_index
                next_index += 1
                results.append(await one_request(client, TEXTS[i % len(TEXTS)], headers))

        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(pid) - cpu0 if cpu0 is not None else None
        batches = await decode_batches(client) - batches_before
    ok = [r for r in results if r[0] == 200]
    other: dict[str, int] = {}
    for r in results:
        if r[0] != 200:
            other[str(r[0])] = other.get(str(r[0]), 0) + 1
    return Level(
        setting=setting, concurrency=concurrency, requests=n_requests, seconds=round(elapsed, 3),
        throughput_rps=round(len(ok) / elapsed, 4),
        audio_seconds_per_s=round(sum(r[3] for r in ok) / 2 / PCM_RATE / elapsed, 4),
        latency_p50=round(percentile([r[1] for r in ok], 0.5), 3), latency_p95=round(percentile([r[1] for r in ok], 0.95), 3),
        ttfa_p50=round(percentile([r[2] for r in ok], 0.5), 3), ttfa_p95=round(percentile([r[2] for r in ok], 0.95), 3),
        status_5xx=sum(1 for r in results if r[0] >= 500), status_other=other, decode_batches=batches,
        server_cpu_s=round(cpu, 2) if cpu is not None else None,
        requests_per_cpu_s=round(len(ok) / cpu, 4) if cpu else None,
    )


async def measure_ttfa(url: str, n: int, key: str | None) -> dict:
    """Six-sentence requests one at a time, streamed and not: when does the first audio arrive?"""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    out = {}
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        for stream in (True, False):
            runs = [await one_request(client, LONG_TEXT, headers, stream) for _ in range(n)]
            ok = [r for r in runs if r[0] == 200]
            key_ = "stream" if stream else "whole"
            out[key_] = {"ttfa_p50": round(percentile([r[2] for r in ok], 0.5), 3),
                         "latency_p50": round(percentile([r[1] for r in ok], 0.5), 3),
                         "audio_seconds_p50": round(percentile([r[3] / 2 / PCM_RATE for r in ok], 0.5), 3),
                         "requests": n, "status_5xx": sum(1 for r in runs if r[0] >= 500)}
            print(f"  ttfa {key_:>6}: first audio p50 {out[key_]['ttfa_p50']:.2f} s, "
                  f"whole p50 {out[key_]['latency_p50']:.2f} s", file=sys.stderr)
    return out


async def decode_batches(client: httpx.AsyncClient) -> int:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("valle2_decode_batches_total "):
            return int(float(line.split()[1]))
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, max_batch: int, max_wait_ms: float, threads: int | None, data_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "valle2", "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port),
           "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--queue-size", "256",
           "--data-dir", data_dir, "--no-auth", "--log-level", "warning"]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not start within 300 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise SystemExit(f"cannot resolve {host!r}") from None
    if not all(a.startswith("127.") or a == "::1" for a in addresses):
        raise SystemExit(f"--url must be a loopback address (this is a load test); {host} is {sorted(addresses)}")


async def measure(url: str, setting: str, levels: list[int], n_requests: int, key: str | None, warmup: int,
                  pid: int | None = None) -> list[Level]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        for i in range(warmup):  # caches the voice prompt, warms kernels and allocators
            await one_request(client, TEXTS[i % len(TEXTS)], {"Authorization": f"Bearer {key}"} if key else {})
    out = []
    for c in levels:
        level = await run_level(url, setting, c, n_requests, key, pid)
        print(f"  {setting:>10} c={c:<3} {level.throughput_rps:.3f} req/s  p50 {level.latency_p50:.2f} s  "
              f"p95 {level.latency_p95:.2f} s  ttfa p50 {level.ttfa_p50:.2f} s  5xx {level.status_5xx}  "
              f"batches {level.decode_batches}  req/cpu-s {level.requests_per_cpu_s}", file=sys.stderr)
        out.append(level)
    return out


def table(levels: list[Level]) -> str:
    rows = ["| setting | clients | requests | req/s | audio s/s | p50 latency s | p95 latency s | p50 TTFA s "
            "| p95 TTFA s | 5xx | decode batches | server CPU s | req per CPU s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for lv in levels:
        per_cpu = f"{lv.requests_per_cpu_s:.3f}" if lv.requests_per_cpu_s else "-"
        rows.append(f"| {lv.setting} | {lv.concurrency} | {lv.requests} | {lv.throughput_rps:.3f} | {lv.audio_seconds_per_s:.3f} "
                    f"| {lv.latency_p50:.2f} | {lv.latency_p95:.2f} | {lv.ttfa_p50:.2f} | {lv.ttfa_p95:.2f} "
                    f"| {lv.status_5xx} | {lv.decode_batches} | {lv.server_cpu_s if lv.server_cpu_s is not None else '-'} "
                    f"| {per_cpu} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="debug", help="model for the started server: debug, default or a folder")
    p.add_argument("--url", default=None, help="use a running server (loopback only) instead of starting one")
    p.add_argument("--api-key", default=os.environ.get("VALLE2_API_KEY"), help="for --url servers with auth")
    p.add_argument("--requests", type=int, default=32, help="requests per concurrency level (fixed)")
    p.add_argument("--concurrency", default="1,4,16", help="comma-separated client counts")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--max-wait-ms", type=float, default=25.0)
    p.add_argument("--threads", type=int, default=None, help="torch threads of the started server")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--ttfa-requests", type=int, default=3,
                   help="six-sentence requests (streamed, then not) for time-to-first-audio; 0 skips")
    p.add_argument("--compare-unbatched", action="store_true",
                   help="also run a server with --max-batch 1 at the highest concurrency")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    args = p.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.requests < 1 or not levels or min(levels) < 1:
        raise SystemExit("--requests and every --concurrency value must be >= 1")

    results: list[Level] = []
    ttfa: dict = {}
    if args.url:
        check_loopback(args.url)
        results += asyncio.run(measure(args.url, "given", levels, args.requests, args.api_key, args.warmup))
        if args.ttfa_requests:
            ttfa = asyncio.run(measure_ttfa(args.url, args.ttfa_requests, args.api_key))
    else:
        settings = [("batched", args.max_batch, levels)]
        if args.compare_unbatched:
            settings.append(("unbatched", 1, [max(levels)]))
        with tempfile.TemporaryDirectory() as home:
            os.environ.setdefault("VALLE2_HOME", home)  # keeps the run's audit log and voices out of ~/.valle2
            for name, max_batch, lv in settings:
                proc, url = start_server(args.model, max_batch, args.max_wait_ms, args.threads, os.path.join(home, name))
                try:
                    results += asyncio.run(measure(url, name, lv, args.requests, None, args.warmup, proc.pid))
                    if name == "batched" and args.ttfa_requests:
                        ttfa = asyncio.run(measure_ttfa(url, args.ttfa_requests, None))
                finally:
                    stop_server(proc)

    summary = {}
    batched = {lv.concurrency: lv for lv in results if lv.setting in ("batched", "given")}
    if 1 in batched and max(batched) > 1:
        top = max(batched)
        summary[f"throughput_{top}_over_1"] = round(batched[top].throughput_rps / batched[1].throughput_rps, 3)
        if batched[1].requests_per_cpu_s and batched[top].requests_per_cpu_s:
            summary[f"per_cpu_{top}_over_1"] = round(batched[top].requests_per_cpu_s / batched[1].requests_per_cpu_s, 3)
    unbatched = [lv for lv in results if lv.setting == "unbatched"]
    if unbatched and unbatched[0].concurrency in batched:
        c = unbatched[0].concurrency
        summary[f"batched_over_unbatched_at_{c}"] = round(batched[c].throughput_rps / unbatched[0].throughput_rps, 3)
        if batched[c].requests_per_cpu_s and unbatched[0].requests_per_cpu_s:
            summary[f"per_cpu_batched_over_unbatched_at_{c}"] = round(
                batched[c].requests_per_cpu_s / unbatched[0].requests_per_cpu_s, 3)
    summary["total_5xx"] = sum(lv.status_5xx for lv in results) + sum(v["status_5xx"] for v in ttfa.values())

    print(table(results))
    print("\n" + ", ".join(f"{k}: {v}" for k, v in summary.items()))
    for mode, v in ttfa.items():
        print(f"six sentences, {mode}: first audio after {v['ttfa_p50']:.2f} s, all of it after {v['latency_p50']:.2f} s "
              f"(p50 of {v['requests']}; {v['audio_seconds_p50']:.1f} s of audio)")
    if args.out:
        machine = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                   "cpu": _cpu_name()}
        with open(args.out, "w") as f:
            json.dump({"model": args.model, "requests": args.requests, "max_batch": args.max_batch,
                       "max_wait_ms": args.max_wait_ms, "machine": machine, "summary": summary, "ttfa": ttfa,
                       "levels": [asdict(lv) for lv in results]}, f, indent=2)
    return 1 if summary["total_5xx"] else 0


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
