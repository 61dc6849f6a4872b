#!/usr/bin/env python3
"""textclf benchmark suite (issue 6). Run it through `bench/run.sh`, which builds the binaries first.

One run measures, on this machine and in this order:
  1. footprint: start-up to ready, RSS idle, model file sizes;
  2. serving with wrk against textclf (default batching), textclf with batching off
     (--max-batch-size 1) and the HTTP ceiling (bench/ceiling), interleaved point by point so the
     three see the same machine state: one text per request at 1/16/64/256 connections, 32 texts
     per request, and a sweep of --max-batch-size at 64 connections; RSS under load;
  3. model speed in-process (criterion, benches/model.rs) on ndarray and on flex;
  4. training of news-zh and newsgroups-en with /usr/bin/time -v;
and writes BENCHMARKS.md plus SVG charts. Standard library only (charts are drawn as SVG here).
`--smoke` is CI's version: a second of load per point, no criterion, no flex, one tiny training
run, output in a temporary directory, and assertions that every table was filled.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
THUC = os.path.join(DATA, "thucnews_titles")
TEXTCLF = os.path.join(ROOT, "target", "release", "textclf")
CEILING = os.path.join(BENCH, "target", "release", "textclf-ceiling")
LUA = os.path.join(BENCH, "wrk", "classify.lua")

CONNECTIONS = [1, 16, 64, 256]
BATCH_CONNECTIONS = [1, 8, 32]  # 32 × 32 texts stays within the default queue of 2048 texts
SWEEP_BATCH_SIZES = [1, 8, 32, 64, 128]
DELAYS_MS = [0, 0.5, 2]
FORWARD_BATCHES = [1, 8, 32, 128]

COMMANDS: list[str] = []  # every measured command, in order, for BENCHMARKS.md


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rel(path: str) -> str:
    return os.path.relpath(path, ROOT)


def show(cmd: list[str], env: dict[str, str] | None = None) -> str:
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    text = " ".join(shlex.quote(rel(c) if c.startswith(ROOT) else c) for c in cmd)
    return f"{prefix} {text}".strip()


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---------------------------------------------------------------------------------------------
# machine


def machine() -> dict:
    info: dict = {"cores": os.cpu_count(), "load_start": loadavg()}
    try:
        with open("/proc/cpuinfo") as f:
            names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        info["cpu"] = names[0] if names else "unknown"
    except OSError:
        info["cpu"] = "unknown"
    with open("/proc/meminfo") as f:
        mem = {l.split(":")[0]: l.split(":")[1].strip() for l in f}
    info["memory_gib"] = int(mem["MemTotal"].split()[0]) / 1024 / 1024
    info["kernel"] = os.uname().release
    for key, cmd in [
        ("rustc", ["rustc", "--version"]),
        ("wrk", ["wrk", "--version"]),
        ("commit", ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
    ]:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True).stdout
            info[key] = (out.strip().splitlines() or ["?"])[0]
        except OSError:
            info[key] = "?"
    info["wrk"] = info["wrk"].split(" Copyright")[0]
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    if dirty:
        info["commit"] += " (plus uncommitted changes in the work tree)"
    return info


# ---------------------------------------------------------------------------------------------
# servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Server:
    def __init__(self, name: str, cmd: list[str], port: int, logdir: str):
        self.name, self.cmd, self.port = name, cmd, port
        self.log = open(os.path.join(logdir, f"{name}.log"), "wb")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, cwd=ROOT)
        url = f"http://127.0.0.1:{port}/health/ready"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.perf_counter() - t0 > 120:
                raise RuntimeError(f"{name} not ready after 120 s")
            time.sleep(0.005)
        self.ready_s = time.perf_counter() - t0
        log(f"{name} ready on :{port} in {self.ready_s * 1000:.0f} ms")

    def rss(self, field: str = "VmRSS") -> int:
        return rss_kib(self.proc.pid, field)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def textclf_server(name: str, logdir: str, *extra: str) -> Server:
    port = free_port()
    cmd = [TEXTCLF, "serve", "--models-dir", os.path.join(ROOT, "models"), "--host", "127.0.0.1",
           "--port", str(port), *extra]
    return Server(name, cmd, port, logdir)


def ceiling_server(logdir: str) -> Server:
    port = free_port()
    return Server("ceiling", [CEILING, str(port)], port, logdir)


# ---------------------------------------------------------------------------------------------
# load


def headlines(n: int) -> list[str]:
    with open(os.path.join(THUC, "test.jsonl"), encoding="utf-8") as f:
        lines = f.readlines()
    step = max(1, len(lines) // n)  # the file is grouped by label: spread over all of them
    return [json.loads(l)["text"] for l in lines[::step][:n]]


def write_bodies(workdir: str) -> tuple[str, str]:
    texts = headlines(640)
    single = os.path.join(workdir, "bodies-1.jsonl")
    with open(single, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    multi = os.path.join(workdir, "bodies-32.jsonl")
    with open(multi, "w", encoding="utf-8") as f:
        for i in range(0, len(texts), 32):
            f.write(json.dumps({"texts": texts[i:i + 32]}, ensure_ascii=False) + "\n")
    return single, multi


def wrk(server: Server, conns: int, seconds: float, bodies: str, texts_per_request: int,
        record: bool = True) -> dict:
    threads = min(os.cpu_count() or 2, conns)
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
           "-s", LUA, f"http://127.0.0.1:{server.port}/classify"]
    env = {"BODIES": bodies}
    if record:
        COMMANDS.append(f"{show(cmd, {'BODIES': rel(bodies) if bodies.startswith(ROOT) else os.path.basename(bodies)})}"
                        f"   # {server.name}: {show(server.cmd)}")
    out = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    m = re.search(r"^WRK_JSON (.*)$", out.stdout, re.M)
    if out.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    r = json.loads(m.group(1))
    secs = r["duration_us"] / 1e6
    lat = r["latency_us"]
    res = {
        "server": server.name, "connections": conns, "texts_per_request": texts_per_request,
        "requests": r["requests"], "rps": r["requests"] / secs,
        "texts_per_s": r["requests"] * texts_per_request / secs,
        "p50_ms": lat["p50"] / 1000, "p90_ms": lat["p90"] / 1000, "p99_ms": lat["p99"] / 1000,
        "max_ms": lat["max"] / 1000,
        "errors": sum(r["errors"].values()), "non2xx": r["errors"]["status"],
        "load": loadavg(),
    }
    if record:
        log(f"{server.name:<12} c={conns:<4} {texts_per_request:>2} texts/req: {res['rps']:9.0f} req/s "
            f"p50 {res['p50_ms']:.2f} p99 {res['p99_ms']:.2f} ms errors {res['errors']}")
    return res


class RssSampler(threading.Thread):
    def __init__(self, server: Server):
        super().__init__(daemon=True)
        self.server, self.peak, self.stop_flag = server, 0, threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            self.peak = max(self.peak, self.server.rss())
            time.sleep(0.05)

    def finish(self) -> int:
        self.stop_flag.set()
        self.join()
        return self.peak


def serving(args, workdir: str) -> dict:
    single, multi = write_bodies(workdir)
    secs = args.seconds
    res: dict = {"single": [], "multi": [], "sweep": [], "delay": []}

    # Start-up is measured on the first server, started alone on an idle process table.
    main = textclf_server("textclf", workdir)
    time.sleep(1.0)
    res["footprint"] = {"ready_s": main.ready_s, "rss_idle_kib": main.rss()}
    nobatch = textclf_server("textclf-b1", workdir, "--max-batch-size", "1")
    ceiling = ceiling_server(workdir)
    trio = [main, ceiling, nobatch]
    try:
        for s in trio:  # warm-up (caches, allocator, first batches); not recorded
            wrk(s, 64, args.warmup, single, 1, record=False)
        for c in CONNECTIONS:
            for s in trio:
                sampler = RssSampler(s) if (s is main and c == 64) else None
                if sampler:
                    sampler.start()
                r = wrk(s, c, secs, single, 1)
                if sampler:
                    res["footprint"]["rss_load64_kib"] = sampler.finish()
                res["single"].append(r)
        for c in BATCH_CONNECTIONS:
            for s in trio:
                res["multi"].append(wrk(s, c, secs, multi, 32))
        res["footprint"]["rss_hwm_kib"] = main.rss("VmHWM")
        # Batch-size sweep at 64 connections (the default, 64, and 1 are the servers above).
        for b in SWEEP_BATCH_SIZES:
            if b == 64:
                s, own = main, False
            elif b == 1:
                s, own = nobatch, False
            else:
                s, own = textclf_server(f"textclf-b{b}", workdir, "--max-batch-size", str(b)), True
            try:
                if own:
                    wrk(s, 64, args.warmup, single, 1, record=False)
                r = wrk(s, 64, secs, single, 1)
                r["max_batch_size"] = b
                res["sweep"].append(r)
            finally:
                if own:
                    s.stop()
        # Batch delay (linger of an idle worker for a fuller batch) at 1 and 64 connections;
        # the default, 0, is the main server above.
        for d in DELAYS_MS:
            s = main if d == 0 else textclf_server(f"textclf-d{d}", workdir, "--max-batch-delay-ms", str(d))
            try:
                if s is not main:
                    wrk(s, 64, args.warmup, single, 1, record=False)
                for c in (1, 64):
                    r = wrk(s, c, secs, single, 1)
                    r["delay_ms"] = d
                    res["delay"].append(r)
            finally:
                if s is not main:
                    s.stop()
    finally:
        for s in trio:
            s.stop()
    res["servers"] = {s.name: show(s.cmd) for s in trio}
    return res


# ---------------------------------------------------------------------------------------------
# criterion


def criterion(backend: str, args) -> dict:
    target = os.path.join(ROOT, "target") if backend == "ndarray" else os.path.join(ROOT, "target", "flex")
    cmd = ["cargo", "bench", "--bench", "model"]
    env = {}
    if backend == "flex":
        cmd += ["--features", "flex"]
        env["CARGO_TARGET_DIR"] = target
    cmd += ["--", "--warm-up-time", "1", "--measurement-time", str(args.criterion_seconds)]
    COMMANDS.append(show(cmd, env))
    log(f"criterion on {backend}: {show(cmd, env)}")
    load = loadavg()
    out = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"criterion ({backend}) failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")

    def est(group: str, bench: str) -> float:
        path = os.path.join(target, "criterion", f"{group}-{backend}", bench, "new", "estimates.json")
        with open(path) as f:
            e = json.load(f)
        return e["median"]["point_estimate"]  # nanoseconds per iteration

    res = {"backend": backend, "encode_ns": est("tokenize", "encode"), "forward_ns": {},
           "burnforward_ns": {}, "load": load}
    for b in FORWARD_BATCHES:
        res["forward_ns"][b] = est("forward", str(b))
        res["burnforward_ns"][b] = est("burnforward", str(b))
    log(f"criterion {backend}: encode {res['encode_ns'] / 1000:.1f} µs, forward {res['forward_ns']}")
    return res


# ---------------------------------------------------------------------------------------------
# training


def train(name: str, extra: list[str], workdir: str) -> dict:
    out = os.path.join(workdir, f"train-{name}")
    cmd = ["/usr/bin/time", "-v", TEXTCLF, "train", *extra, "--out", out]
    shown = show(cmd).replace(DATA, "../shared/data").replace(out, "<tmp>/" + os.path.basename(out))
    COMMANDS.append(shown)
    log(f"training {name}: {shown}")
    load = loadavg()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"training {name} failed:\n{p.stderr[-3000:]}")
    epochs = [
        {"epoch": int(m.group(1)), "seconds": float(m.group(2)), "ex_per_s": float(m.group(3))}
        for m in re.finditer(r"^epoch (\d+) train_loss .*\(([\d.]+) s, (\d+) ex/s\)", p.stderr, re.M)
    ]
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    with open(os.path.join(out, "manifest.json")) as f:
        man = json.load(f)
    test = man["metrics"].get("test", {})
    res = {
        "name": name, "wall_s": wall, "train_s": man["training"]["seconds"],
        "examples": man["training"]["train_examples"], "epochs": epochs,
        "accuracy": test.get("accuracy"), "macro_f1": test.get("macro_f1"),
        "peak_rss_kib": int(peak.group(1)) if peak else None, "load": load,
    }
    log(f"trained {name}: {wall:.1f} s wall, accuracy {res['accuracy']}")
    return res


def trainings(args, workdir: str) -> list[dict]:
    if args.smoke:
        return [train("tiny-news-zh (smoke: dev split, 1 epoch)",
                      ["--train", os.path.join(THUC, "dev.jsonl"), "--test", os.path.join(THUC, "test.jsonl"),
                       "--epochs", "1"], workdir)]
    ng = os.path.join(DATA, "20newsgroups")
    return [
        train("news-zh", ["--train", os.path.join(THUC, "train_subset.jsonl"), "--train",
                          os.path.join(THUC, "dev.jsonl"), "--test", os.path.join(THUC, "test.jsonl")], workdir),
        train("newsgroups-en", ["--train", os.path.join(ng, "train.jsonl.gz"), "--test",
                                os.path.join(ng, "test.jsonl.gz"), "--epochs", "12", "--max-tokens", "512",
                                "--max-vocab", "100000"], workdir),
    ]


# ---------------------------------------------------------------------------------------------
# charts (plain SVG)

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f"]


def _ticks_log(lo: float, hi: float) -> list[float]:
    ticks = []
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 1.0001:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo * 0.9999 <= v <= hi * 1.0001:
                ticks.append(v)
        e += 1
    return ticks


def _fmt(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def svg_chart(path: str, title: str, xlabel: str, ylabel: str, series: list[tuple[str, list, str]],
              xticks: list[float]) -> None:
    """Log-log line chart. series: (name, [(x, y)], dash) with dash '' for solid lines."""
    W, H, L, R, T, B = 760, 440, 80, 230, 40, 55
    pts = [p for _, s, _ in series for p in s if p[1] > 0]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xlo, xhi = min(xs + xticks), max(xs + xticks)
    ylo = 10 ** math.floor(math.log10(min(ys)))
    yhi = 10 ** math.ceil(math.log10(max(ys)))

    def X(x: float) -> float:
        return L + (math.log(x) - math.log(xlo)) / (math.log(xhi) - math.log(xlo) or 1) * (W - L - R)

    def Y(y: float) -> float:
        return H - B - (math.log(y) - math.log(ylo)) / (math.log(yhi) - math.log(ylo) or 1) * (H - T - B)

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{(L + W - R) / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>']
    for v in _ticks_log(ylo, yhi):
        o.append(f'<line x1="{L}" x2="{W - R}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    for v in xticks:
        o.append(f'<line x1="{X(v):.1f}" x2="{X(v):.1f}" y1="{T}" y2="{H - B}" stroke="#eee"/>')
        o.append(f'<text x="{X(v):.1f}" y="{H - B + 16}" text-anchor="middle">{_fmt(v)}</text>')
    o.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#333"/>')
    o.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">{xlabel}</text>')
    o.append(f'<text transform="translate(18 {(T + H - B) / 2}) rotate(-90)" text-anchor="middle">{ylabel}</text>')
    for i, (name, s, dash) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        s = [p for p in s if p[1] > 0]
        d = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in s)
        da = f' stroke-dasharray="{dash}"' if dash else ""
        o.append(f'<polyline points="{d}" fill="none" stroke="{c}" stroke-width="2"{da}/>')
        for x, y in s:
            o.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="3" fill="{c}"/>')
        ly = T + 10 + 18 * i
        o.append(f'<line x1="{W - R + 12}" x2="{W - R + 38}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="2"{da}/>')
        o.append(f'<text x="{W - R + 44}" y="{ly + 4}">{name}</text>')
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def charts(res: dict, chart_dir: str) -> dict[str, str]:
    os.makedirs(chart_dir, exist_ok=True)
    out = {}
    single = res["serving"]["single"]
    series = []
    for srv in ["textclf", "textclf-b1", "ceiling"]:
        rows = [r for r in single if r["server"] == srv]
        for q, dash in [("p50", "6,4"), ("p99", "")]:
            series.append((f"{srv} {q}", [(r["connections"], r[f"{q}_ms"]) for r in rows], dash))
    p = os.path.join(chart_dir, "latency-vs-concurrency.svg")
    svg_chart(p, "/classify latency vs concurrency (1 text per request)", "connections (wrk)",
              "latency (ms, log)", series, CONNECTIONS)
    out["latency"] = p

    series = [(srv, [(r["connections"], r["rps"]) for r in single if r["server"] == srv], "")
              for srv in ["textclf", "textclf-b1", "ceiling"]]
    p = os.path.join(chart_dir, "throughput-vs-concurrency.svg")
    svg_chart(p, "/classify requests/s vs concurrency (1 text per request)", "connections (wrk)",
              "requests/s (log)", series, CONNECTIONS)
    out["throughput_conc"] = p

    series = [("server, 64 conns, 1 text/req", [(r["max_batch_size"], r["texts_per_s"])
                                                for r in res["serving"]["sweep"]], "")]
    for crit in res.get("criterion", []):
        series.append((f"forward in-process ({crit['backend']})",
                       [(b, b / ns * 1e9) for b, ns in crit["forward_ns"].items()], "6,4"))
        series.append((f"burn forward ({crit['backend']})",
                       [(b, b / ns * 1e9) for b, ns in crit["burnforward_ns"].items()], "2,3"))
    p = os.path.join(chart_dir, "throughput-vs-batch-size.svg")
    svg_chart(p, "texts/s vs batch size", "batch size (server: --max-batch-size)", "texts/s (log)",
              series, sorted(set(SWEEP_BATCH_SIZES + FORWARD_BATCHES)))
    out["throughput_batch"] = p
    return out


# ---------------------------------------------------------------------------------------------
# report


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def mib(kib: int | None) -> str:
    return "–" if kib is None else f"{kib / 1024:.1f} MiB"


def report(res: dict, md_path: str, chart_paths: dict[str, str], args) -> str:
    m = res["machine"]
    sv = res["serving"]
    single, multi, sweep = sv["single"], sv["multi"], sv["sweep"]
    by = {(r["server"], r["connections"]): r for r in single}
    mby = {(r["server"], r["connections"]): r for r in multi}
    fp = sv["footprint"]
    t64, c64 = by[("textclf", 64)], by[("ceiling", 64)]
    ratio64 = t64["rps"] / c64["rps"]
    crit = {c["backend"]: c for c in res.get("criterion", [])}
    L: list[str] = []
    a = L.append
    a("# textclf benchmarks")
    a("")
    a(f"Generated by `bench/run.sh{' --smoke' if args.smoke else ''}` on "
      f"{res['started']} (commit {m['commit']}); every figure below comes from that one run. "
      f"Regenerate with `bench/run.sh` (see [bench/README.md](bench/README.md)).")
    if args.smoke:
        a("")
        a("**SMOKE RUN** (CI): a second of load per point, no criterion, no training run worth the "
          "name. These figures only show that the suite works.")
    a("")
    a("## Machine")
    a("")
    a("| | |")
    a("|---|---|")
    a(f"| CPU | {m['cpu']}, {m['cores']} cores (shared by wrk and the server under test) |")
    a(f"| memory | {m['memory_gib']:.1f} GiB |")
    a(f"| kernel | {m['kernel']} |")
    a(f"| toolchain | {m['rustc']} |")
    a(f"| load generator | {m['wrk']} |")
    a(f"| load average (1/5/15 min) | at start {m['load_start']}; after serving {res['load_after_serving']}; "
      f"at end {res['load_end']} |")
    a("")
    a("The machine is shared with other engineers' builds; a load average above ~0.5 at a point "
      "means another process competed for the 2 cores. Each table row records the load average "
      "at the end of its measurement. Ratios compare points measured back to back in the same run "
      "(the three servers are interleaved point by point).")
    a("")
    a("## Targets")
    a("")
    a("| target | measured | |")
    a("|---|---|---|")
    a(f"| textclf ≥ 0.7 × ceiling req/s at 64 connections | {ratio64:.2f} ({t64['rps']:.0f} vs {c64['rps']:.0f} req/s) | {verdict(ratio64 >= 0.7)} |")
    a(f"| p99 ≤ 10 ms at 64 connections | {t64['p99_ms']:.2f} ms | {verdict(t64['p99_ms'] <= 10)} |")
    a(f"| start-up to ready ≤ 1 s | {fp['ready_s'] * 1000:.0f} ms | {verdict(fp['ready_s'] <= 1)} |")
    rl = fp.get("rss_load64_kib", 0)
    a(f"| RSS under 64-connection load ≤ 150 MB | {rl * 1024 / 1e6:.1f} MB ({mib(rl)}) | {verdict(rl * 1024 <= 150e6)} |")
    for t in res["training"]:
        if t["name"] == "news-zh":
            ok = t["wall_s"] <= 3 * 14 and (t["accuracy"] or 0) >= 0.89
            a(f"| news-zh training within 3× fastText (8–14 s) at accuracy ≥ 0.89 | {t['wall_s']:.1f} s wall "
              f"({t['wall_s'] / 14:.1f}–{t['wall_s'] / 8:.1f}× fastText), accuracy {t['accuracy']:.4f} | {verdict(ok)} |")
    a("")

    a("## Serving: one text per request")
    a("")
    a("`POST /classify` with `{\"text\": ...}`, bodies rotated over 640 THUCNews test headlines. "
      "textclf = default settings (batches of up to 64 texts, dispatched as soon as the model worker is idle); "
      "textclf-b1 = `--max-batch-size 1` (batching off); ceiling = `bench/ceiling` (axum parsing "
      "the same JSON, fixed answer of the same shape). Latencies in ms as wrk measures them.")
    a("")
    a("| connections | server | req/s | p50 | p90 | p99 | max | errors | vs ceiling | load avg |")
    a("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for c in CONNECTIONS:
        ceil = by[("ceiling", c)]["rps"]
        for srv in ["textclf", "textclf-b1", "ceiling"]:
            r = by[(srv, c)]
            a(f"| {c} | {srv} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['max_ms']:.1f} | {r['errors']} | {r['rps'] / ceil:.2f} | {r['load']} |")
    a("")
    a(f"![latency vs concurrency]({os.path.relpath(chart_paths['latency'], os.path.dirname(md_path))})")
    a("")
    a(f"![throughput vs concurrency]({os.path.relpath(chart_paths['throughput_conc'], os.path.dirname(md_path))})")
    a("")
    a("## Serving: 32 texts per request")
    a("")
    a("`{\"texts\": [32 headlines]}`; texts/s = requests/s × 32.")
    a("")
    a("| connections | server | texts/s | req/s | p50 | p90 | p99 | errors | vs ceiling | load avg |")
    a("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for c in BATCH_CONNECTIONS:
        ceil = mby[("ceiling", c)]["rps"]
        for srv in ["textclf", "textclf-b1", "ceiling"]:
            r = mby[(srv, c)]
            a(f"| {c} | {srv} | {r['texts_per_s']:.0f} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
              f"{r['p99_ms']:.2f} | {r['errors']} | {r['rps'] / ceil:.2f} | {r['load']} |")
    a("")
    a("## What batching buys: `--max-batch-size` at 64 connections, one text per request")
    a("")
    a("| --max-batch-size | req/s (= texts/s) | p50 | p99 | errors | load avg |")
    a("|---:|---:|---:|---:|---:|---|")
    for r in sweep:
        a(f"| {r['max_batch_size']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r['load']} |")
    a("")
    a(f"![throughput vs batch size]({os.path.relpath(chart_paths['throughput_batch'], os.path.dirname(md_path))})")
    a("")

    a("## Batch delay: `--max-batch-delay-ms`, one text per request")
    a("")
    a("How long a batch waits for more requests after its first while the model worker is idle "
      "(while it is busy, the next batch grows anyway). 0 is the default.")
    a("")
    a("| --max-batch-delay-ms | connections | req/s | p50 | p99 | errors | load avg |")
    a("|---:|---:|---:|---:|---:|---:|---|")
    for r in res["serving"].get("delay", []):
        a(f"| {r['delay_ms']} | {r['connections']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r['load']} |")
    a("")
    a("## Model speed in-process (criterion, `benches/model.rs`, news-zh)")
    a("")
    if not crit:
        a("Not run (smoke run).")
    else:
        a("`encode` = tokenizer + vocabulary lookup of one headline; `forward b` = "
          "`LoadedModel::classify_encoded` on b pre-encoded headlines, the worker's inference call "
          "(embedding mean pooled on the host, dense head + softmax in burn, scores back); "
          "`burn forward b` = the whole network in burn including the embedding gather "
          "(`pad_batch` + `TextClassifier::scores`), i.e. `classify_encoded` before the fix "
          "described in [bench/FINDINGS.md](bench/FINDINGS.md). Medians.")
        a("")
        names = [b for b in ("ndarray", "flex") if b in crit]
        a("| measurement | " + " | ".join(f"{n} time | {n} texts/s" for n in names)
          + (" | flex speed-up |" if len(names) == 2 else " |"))
        a("|---|" + "---:|---:|" * len(names) + ("---:|" if len(names) == 2 else ""))

        def row(label: str, key) -> None:
            cells = []
            vals = []
            for n in names:
                ns, texts = key(crit[n])
                vals.append(ns)
                cells.append(f"{ns / 1000:.1f} µs | {texts / ns * 1e9:.0f}")
            sp = f" | {vals[0] / vals[1]:.2f}×" if len(vals) == 2 else ""
            a(f"| {label} | " + " | ".join(cells) + sp + " |")

        row("encode (1 text)", lambda c: (c["encode_ns"], 1))
        for b in FORWARD_BATCHES:
            row(f"forward, batch {b}", lambda c, b=b: (c["forward_ns"][b], b))
        for b in FORWARD_BATCHES:
            row(f"burn forward, batch {b}", lambda c, b=b: (c["burnforward_ns"][b], b))
        a("")
        a("Load average when each criterion run started: " +
          ", ".join(f"{n} {crit[n]['load']}" for n in names) + ".")
        a("")
        nd = crit["ndarray"]
        best_b = max(FORWARD_BATCHES, key=lambda b: b / nd["forward_ns"][b])
        ceiling_tps = 1e9 / (nd["encode_ns"] + nd["forward_ns"][best_b] / best_b)
        best_single = max(r["texts_per_s"] for r in single if r["server"] == "textclf")
        best_multi = max(r["texts_per_s"] for r in multi if r["server"] == "textclf")
        a(f"In-process ceiling on ndarray (one thread, encode + forward at batch {best_b}): "
          f"**{ceiling_tps:.0f} texts/s**. The server reached {best_single:.0f} texts/s with one "
          f"text per request (**{best_single / ceiling_tps:.2f}×** that ceiling) and "
          f"{best_multi:.0f} texts/s with 32 texts per request (**{best_multi / ceiling_tps:.2f}×**).")
        if "flex" in crit:
            fx = crit["flex"]
            a("")
            a(f"flex vs ndarray (>1 = flex faster): product forward at batch 1 "
              f"{nd['forward_ns'][1] / fx['forward_ns'][1]:.2f}×, batch 32 "
              f"{nd['forward_ns'][32] / fx['forward_ns'][32]:.2f}×, batch 128 "
              f"{nd['forward_ns'][128] / fx['forward_ns'][128]:.2f}×; whole network in burn at batch 32 "
              f"{nd['burnforward_ns'][32] / fx['burnforward_ns'][32]:.2f}×, batch 128 "
              f"{nd['burnforward_ns'][128] / fx['burnforward_ns'][128]:.2f}×. "
              "The product keeps ndarray as its default; these are the figures a switch would rest on.")
    a("")

    a("## Training")
    a("")
    a("`textclf train` under `/usr/bin/time -v` (commands below). Per-epoch figures are the "
      "trainer's own; wall time includes reading data, building the vocabulary and scoring the test split.")
    a("")
    a("| model | examples | epochs | s/epoch (mean) | ex/s (mean) | training s | wall s | test accuracy | macro-F1 | peak RSS | load avg at start |")
    a("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for t in res["training"]:
        ep = t["epochs"]
        spe = sum(e["seconds"] for e in ep) / len(ep) if ep else float("nan")
        exs = sum(e["ex_per_s"] for e in ep) / len(ep) if ep else float("nan")
        acc = f"{t['accuracy']:.4f}" if t["accuracy"] is not None else "–"
        f1 = f"{t['macro_f1']:.4f}" if t["macro_f1"] is not None else "–"
        a(f"| {t['name']} | {t['examples']} | {len(ep)} | {spe:.2f} | {exs:.0f} | {t['train_s']:.1f} | "
          f"{t['wall_s']:.1f} | {acc} | {f1} | {mib(t['peak_rss_kib'])} | {t['load']} |")
    a("")
    a("fastText reference (README): 8–14 s for the 43,590 THUCNews titles on 2 threads, accuracy 0.889–0.892.")
    a("")

    a("## Footprint")
    a("")
    a("| | |")
    a("|---|---|")
    a(f"| start-up to ready (process start → `GET /health/ready` 200, both models loaded) | {fp['ready_s'] * 1000:.0f} ms |")
    a(f"| RSS idle (1 s after ready) | {mib(fp['rss_idle_kib'])} |")
    a(f"| RSS peak during the 64-connection run (sampled every 50 ms) | {mib(fp.get('rss_load64_kib'))} |")
    a(f"| RSS high-water mark after all textclf loads (VmHWM) | {mib(fp.get('rss_hwm_kib'))} |")
    for d in sorted(os.listdir(os.path.join(ROOT, "models"))):
        md = os.path.join(ROOT, "models", d)
        if os.path.isdir(md):
            files = ", ".join(f"{f} {os.path.getsize(os.path.join(md, f)) / 1e6:.2f} MB"
                              for f in sorted(os.listdir(md)))
            a(f"| model `{d}` | {files} |")
    a(f"| `target/release/textclf` binary | {os.path.getsize(TEXTCLF) / 1e6:.1f} MB |")
    a("")

    a("## Exact commands")
    a("")
    a("Servers:")
    a("")
    a("```sh")
    for name, cmd in sv["servers"].items():
        a(f"{cmd}   # {name}")
    a("```")
    a("")
    a("Measurements, in run order (ports are picked free at run time; `bodies-*.jsonl` are written "
      "by `bench/bench.py` from `../shared/data/thucnews_titles/test.jsonl`):")
    a("")
    a("```sh")
    L.extend(COMMANDS)
    a("```")
    a("")
    notes = os.path.join(BENCH, "FINDINGS.md")
    if os.path.exists(notes) and not args.smoke:
        a("## Findings")
        a("")
        a(f"Hand-written notes kept in [bench/FINDINGS.md](bench/FINDINGS.md) (profiles, causes, what is left).")
        a("")
    return "\n".join(L) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CI smoke run: seconds, not minutes")
    ap.add_argument("--out", help="BENCHMARKS.md path (default: repo root; smoke: a temp dir)")
    ap.add_argument("--charts", help="chart directory (default: bench/charts; smoke: beside --out)")
    ap.add_argument("--seconds", type=float, help="wrk seconds per point (default 10; smoke 1)")
    ap.add_argument("--no-flex", action="store_true", help="skip the flex criterion run")
    ap.add_argument("--render-only", metavar="JSON", help="re-render the report from a saved BENCHMARKS.json")
    args = ap.parse_args()
    args.seconds = args.seconds or (1 if args.smoke else 10)
    args.warmup = 1 if args.smoke else 3
    args.criterion_seconds = 5
    if args.smoke:
        tmp = tempfile.mkdtemp(prefix="textclf-bench-smoke-")
        args.out = args.out or os.path.join(tmp, "BENCHMARKS.md")
        args.charts = args.charts or os.path.join(os.path.dirname(os.path.abspath(args.out)), "charts")
    else:
        args.out = args.out or os.path.join(ROOT, "BENCHMARKS.md")
        args.charts = args.charts or os.path.join(BENCH, "charts")
    args.out = os.path.abspath(args.out)

    for tool in ["wrk", "/usr/bin/time", TEXTCLF, CEILING]:
        if not shutil.which(tool) and not os.path.exists(tool):
            sys.exit(f"missing {tool}: run bench/run.sh, which installs and builds what is needed")

    if args.render_only:
        with open(args.render_only) as f:
            res = json.load(f)
        for crit in res["criterion"]:
            for k in ("forward_ns", "burnforward_ns"):
                crit[k] = {int(b): v for b, v in crit[k].items()}
        COMMANDS.extend(res.get("commands", []))
        chart_paths = charts(res, args.charts)
        with open(args.out, "w") as f:
            f.write(report(res, args.out, chart_paths, args))
        return 0
    res: dict = {"started": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
                 "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="textclf-bench-") as work:
        res["serving"] = serving(args, work)
        res["load_after_serving"] = loadavg()
        res["criterion"] = []
        if not args.smoke:
            res["criterion"].append(criterion("ndarray", args))
            if not args.no_flex:
                res["criterion"].append(criterion("flex", args))
        res["training"] = trainings(args, work)
    res["load_end"] = loadavg()
    res["commands"] = COMMANDS
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(res, f, indent=1, default=str)  # first, so --render-only can recover a run

    chart_paths = charts(res, args.charts)
    text = report(res, args.out, chart_paths, args)
    with open(args.out, "w") as f:
        f.write(text)
    log(f"wrote {args.out} and charts in {args.charts}")

    # The smoke run's assertions: every table filled with real, error-free measurements.
    problems = []
    for r in res["serving"]["single"] + res["serving"]["multi"] + res["serving"]["sweep"]:
        if r["requests"] <= 0:
            problems.append(f"no requests completed: {r['server']} c={r['connections']}")
        if r["errors"]:
            problems.append(f"{r['errors']} errors: {r['server']} c={r['connections']} x{r['texts_per_request']}")
    for section in ["## Serving: one text per request", "## Serving: 32 texts per request",
                    "## What batching buys", "## Training", "## Footprint"]:
        if section not in text:
            problems.append(f"missing section {section}")
    for p in chart_paths.values():
        if os.path.getsize(p) < 500:
            problems.append(f"chart too small: {p}")
    if not res["training"] or not res["training"][0]["epochs"] or res["training"][0]["accuracy"] is None:
        problems.append("training produced no epochs or no test accuracy")
    if problems:
        print("BENCH FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"bench: OK, tables in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
