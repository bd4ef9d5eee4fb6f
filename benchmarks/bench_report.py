#!/usr/bin/env python3
"""Writes the "make bench" section of benchmarks/RESULTS.md from the files
run_bench.sh leaves in its work folder:

  meta.json                    commit, date, machine, commands, load averages
  membw.txt                    benchmarks/membw output
  membw-<dtype>-before.txt,    membw on the DRAM buffer, 2 threads, just before that
    membw-<dtype>-after.txt      dtype's engine runs and just after its server
  forward-<dtype>.json         forward_benchmark --benchmark_out (Google Benchmark JSON)
  forward-<dtype>.txt          its console output (shown as is)
  pair<N>-<dtype>-bare.json    forward_benchmark at batch 1 and 8 in paired round N,
    pair<N>-<dtype>-c1.json,     then inferd-bench at 1 and 8 streams on the same server,
    pair<N>-<dtype>-c8.json      streamed,
    pair<N>-<dtype>-u1.json,     then the same load as unary Generate calls
    pair<N>-<dtype>-u8.json
  <dtype>-c1.json, -c8.json    inferd-bench --output-json
  <dtype>-server.err           why the server for that dtype did not run

Every figure printed here is read from those files; the only constants are
the model's shape (for weight bytes) and the llama.cpp bars of issue 11.
Usage: bench_report.py WORK_DIR > section.md
       bench_report.py --pair WORK_DIR DTYPE N   (one line on paired round N)
"""

import json
import os
import re
import statistics
import sys

DTYPES = ["float32", "float16", "bfloat16", "q8_0"]

# dummy:llama-110m (engine/model/dummy_weights.cc): dim 768, hidden 2048,
# 12 layers, 12 heads (no GQA), vocab 32000, separate classifier. A decode
# step streams every matrix once: per layer wq, wk, wv, wo (dim x dim) and
# w1, w2, w3 (dim x hidden), then the classifier (vocab x dim). The
# embedding table is read one row per token, the norms are noise.
DIM, HIDDEN, LAYERS, VOCAB = 768, 2048, 12, 32000
STREAMED_WEIGHTS = LAYERS * (4 * DIM * DIM + 3 * DIM * HIDDEN) + VOCAB * DIM
BYTES_PER_WEIGHT = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "q8_0": 34.0 / 32.0}  # Q8_0: 32 int8 + f16 scale

# Issue 11: llama-server on the same model type and machine type, output
# tok/s at 128 random-id prompt tokens / 128 output tokens, streamed. The
# goals are 1.2x at 1 stream and 1.5x at 8 streams. llama.cpp has no bf16 row.
LLAMA_SERVER = {
    "float32": {"c1": 95.0, "c8": 235.0},
    "float16": {"c1": 146.0, "c8": 338.0},
    "q8_0": {"c1": 186.0, "c8": 281.0},
}
GOAL_FACTOR = {"c1": 1.2, "c8": 1.5}
# llama.cpp's engine-only figures from the issue, for the engine table.
LLAMA_ENGINE = {"float32": {1: 122.0, 8: 378.0, 32: 682.0}, "float16": {1: 181.0}, "q8_0": {1: 243.0}}
LLAMA_PP512 = {"float32": 1360.0}


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def fmt(value, digits=1):
    return "-" if value is None else f"{value:,.{digits}f}"


def weight_mb(dtype):
    return STREAMED_WEIGHTS * BYTES_PER_WEIGHT[dtype] / 1e6


def parse_membw(text):
    """{(size_mib, threads): (gbps, gbps_cpu, cpu_share)} and the header line."""
    out, header = {}, ""
    for line in (text or "").splitlines():
        if line.startswith("# membw"):
            header = line[2:]
        m = re.match(r"membw size_mib=(\d+) threads=(\d+) gbps=([\d.]+) gbps_cpu=([\d.]+) cpu_share=([\d.]+)", line)
        if m:
            out[(int(m.group(1)), int(m.group(2)))] = (float(m.group(3)), float(m.group(4)), float(m.group(5)))
    return out, header


def parse_forward(data):
    """({batch: step_seconds}, prefill_seconds or None) from Google Benchmark
    JSON: BM_DecodeStep[/<dtype>]/<batch> and BM_Prefill512[/<dtype>]."""
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    steps, prefill = {}, None
    for b in (data or {}).get("benchmarks", []):
        if b.get("run_type", "iteration") != "iteration" or b.get("error_occurred"):
            continue
        seconds = b["real_time"] * scale[b.get("time_unit", "ns")]
        name = b.get("name", "")
        m = re.match(r"BM_DecodeStep/(?:[^/]*[A-Za-z][^/]*/)?(\d+)(/|$)", name)
        if m:
            steps[int(m.group(1))] = seconds
        elif re.match(r"BM_Prefill512(/|$)", name):
            prefill = seconds
    return steps, prefill


def paired_round(work, dtype, n):
    """{batch: (bare step s, streamed step s, unary step s or None)} for paired
    round n, where the bare and the streamed run both ran."""
    bare = parse_forward(load_json(os.path.join(work, f"pair{n}-{dtype}-bare.json")))[0]

    def served_step(name):
        server = (load_json(os.path.join(work, f"pair{n}-{dtype}-{name}.json")) or {}).get("server") or {}
        return server.get("mean_decode_step_s")
    out = {}
    for batch in (1, 8):
        step = served_step(f"c{batch}")
        if bare.get(batch) and step:
            out[batch] = (bare[batch], step, served_step(f"u{batch}"))
    return out


def verdict(ours, bar):
    if bar is None:
        return "no bar"
    if ours is None:
        return "MISS (not measured)"
    return "PASS" if ours >= bar else "MISS"


def main():
    work = sys.argv[1]
    meta = load_json(os.path.join(work, "meta.json")) or {}
    membw, membw_header = parse_membw(read_text(os.path.join(work, "membw.txt")))
    dtypes = meta.get("dtypes", DTYPES)
    parsed = {d: parse_forward(load_json(os.path.join(work, f"forward-{d}.json"))) for d in dtypes}
    pairs = {d: [paired_round(work, d, n) for n in range(1, int(meta.get("pairs", 0)) + 1)] for d in dtypes}

    def paired_ratios(dtype, batch):
        return [r[batch][1] / r[batch][0] for r in pairs[dtype] if batch in r]

    def split_ratios(dtype, batch):
        """(streamed / unary, unary / bare) of the rounds where the unary run ran."""
        rounds = [r[batch] for r in pairs[dtype] if batch in r and r[batch][2]]
        return [s / u for _, s, u in rounds], [u / b for b, _, u in rounds]
    forward = {d: parsed[d][0] for d in dtypes}
    prefill = {d: parsed[d][1] for d in dtypes}
    served = {d: {c: load_json(os.path.join(work, f"{d}-{c}.json")) for c in ("c1", "c8")} for d in dtypes}
    errors = {d: read_text(os.path.join(work, f"{d}-server.err")) for d in dtypes}
    dram_mib = meta.get("membw_dram_mib")
    # {dtype: [GB/s before, GB/s after]}, per CPU time, 2 threads.
    alongside = {
        d: [v[1] for when in ("before", "after")
            for v in parse_membw(read_text(os.path.join(work, f"membw-{d}-{when}.txt")))[0].values()]
        for d in dtypes
    }

    def closest_size(dtype, threads=2):
        """The measured buffer (MiB) closest to this dtype's weights' size."""
        sizes = sorted({s for s, t in membw if t == threads})
        target = weight_mb(dtype) * 1e6 / 2**20
        return min(sizes, key=lambda s: abs(s - target)) if sizes else None

    def bandwidth(dtype, threads=2):
        """(GB/s, size MiB): the roof for this dtype's weights, read over the
        threads' CPU time (what they read while they run: on a shared machine
        the wall-time figure is the machine's load as much as its memory).
        The buffer closest to the weights' size, or a larger one that read
        faster: all of them are DRAM, and a neighbour on the memory bus only
        ever lowers a figure (one run read 28 GB/s on 209 MiB and 55 on 1 GiB,
        each with all of its CPU)."""
        closest = closest_size(dtype, threads)
        if closest is None:
            return None, None
        sizes = {s for s, t in membw if t == threads}
        size = max((s for s in sizes if s >= closest), key=lambda s: membw[(s, threads)][1])
        return membw[(size, threads)][1], size

    def bandwidth_alongside(dtype):
        """The mean of the DRAM readings taken beside this dtype's runs, or
        the start-of-run roof where there are none."""
        readings = alongside.get(dtype) or []
        return sum(readings) / len(readings) if readings else bandwidth(dtype)[0]

    def roof(dtype, tokens_per_s, batch):
        """Weight GB/s that tokens_per_s implies, and its share of the
        bandwidth measured beside it."""
        if tokens_per_s is None:
            return "-"
        gbs = weight_mb(dtype) / 1e3 * tokens_per_s / batch
        bw = bandwidth_alongside(dtype)
        return f"{gbs:.1f} GB/s ({gbs / bw:.0%})" if bw else f"{gbs:.1f} GB/s"

    p = print
    p(meta.get("begin_mark", ""))
    p("## make bench")
    p()
    p(f"Commit {meta.get('commit', '?')}, {meta.get('date', '?')}; {meta.get('cpus', '?')} CPUs "
      f"({meta.get('cpu', '?')}, L3 {meta.get('l3', '?')}). Model dummy:llama-110m (generated weights) on the CPU "
      f"backend, served at each `--dtype`. Load average {meta.get('load_before', '?')} before the run and "
      f"{meta.get('load_after', '?')} after it: this machine is shared, and other work on its two cores slows "
      f"every figure here (see the CPU share of the bandwidth runs). Run time {meta.get('elapsed', '?')}.")
    p()

    # --- memory bandwidth ---------------------------------------------------
    p("### Memory read bandwidth (the roof)")
    p()
    p(f"Command: `{meta.get('membw_cmd', '?')}` ({membw_header}). gbps: bytes over wall time; "
      "gbps/CPU: over the threads' own CPU time, what they would read if nothing else ran; CPU share: how much "
      "of their cores they got.")
    p()
    p("| buffer MiB | what it measures | threads | GB/s | GB/s per CPU time | CPU share |")
    p("| --- | --- | --- | --- | --- | --- |")
    for (size, threads), (gbps, gbps_cpu, share) in sorted(membw.items(), key=lambda kv: (-kv[0][0], kv[0][1])):
        what = "DRAM (much larger than L3)" if dram_mib and size == dram_mib else "fits in L3"
        for d in dtypes:
            if closest_size(d) == size and size != dram_mib:
                what = f"{d} weights' size" if what == "fits in L3" else what
        p(f"| {size} | {what} | {threads} | {gbps:.1f} | {gbps_cpu:.1f} | {share:.2f} |")
    p()
    p(f"Weights streamed per decode step (every matrix once): {STREAMED_WEIGHTS / 1e6:.1f} M weights = "
      + ", ".join(f"{weight_mb(d):.0f} MB at {d}" for d in dtypes)
      + ". Roofline below: weight bytes per step x steps/s, and its share of the DRAM bandwidth (2 threads, per "
      "CPU time) read just before that dtype's engine runs and again just after its server "
      f"(`{meta.get('alongside_cmd', '?')}`): the host's bandwidth drifts by up to 2x within minutes, so a "
      "figure is read against what the machine gave at the time, not at the start of the run.")
    p()
    if any(alongside.values()):
        p("| dtype | DRAM GB/s before, after | mean | weight MB per token | batch-1 roof tok/s (mean / weight bytes) |")
        p("| --- | --- | --- | --- | --- |")
        for d in dtypes:
            readings = alongside.get(d) or []
            if not readings:
                p(f"| {d} | not measured | - | {weight_mb(d):.0f} | - |")
                continue
            bw = bandwidth_alongside(d)
            p(f"| {d} | {', '.join(f'{r:.1f}' for r in readings)} | {bw:.1f} | {weight_mb(d):.0f} "
              f"| {bw * 1e3 / weight_mb(d):.0f} |")
        p()

    # --- engine only ----------------------------------------------------------
    p("### Engine only: one decode step (forward pass, no scheduler or server)")
    p()
    p(f"Command: `{meta.get('forward_cmd', '?')}` per dtype (context 192 tokens per sequence, the mean context of a served decode step below, in a cache "
      "prefilled with real tokens; the KV cache in float32 beside float32 weights and in float16 beside the others, as "
      "the server's `--kv-cache-dtype auto` holds it).")
    if meta.get("forward_note"):
        p()
        p(meta["forward_note"])
    p()
    p("| dtype | batch | step ms | tok/s | weight traffic (roofline share) | llama.cpp tok/s (issue 11) |")
    p("| --- | --- | --- | --- | --- | --- |")
    for d in dtypes:
        steps = forward[d]
        if not steps:
            p(f"| {d} | - | - | - | - | not measured (see below) |")
            continue
        for batch in sorted(steps):
            tps = batch / steps[batch]
            llama = LLAMA_ENGINE.get(d, {}).get(batch)
            p(f"| {d} | {batch} | {steps[batch] * 1e3:.2f} | {tps:.1f} | {roof(d, tps, batch)} | {fmt(llama, 0)} |")
    p()
    if any(prefill.values()):
        p("Prefill of one 512-token prompt (BM_Prefill512), against llama.cpp's pp512 (issue 11: f32 about "
          "1,360 tok/s; no figure for the other dtypes):")
        p()
        p("| dtype | prefill ms | tok/s | llama.cpp pp512 tok/s | verdict |")
        p("| --- | --- | --- | --- | --- |")
        for d in dtypes:
            if prefill[d]:
                tps = 512 / prefill[d]
                bar = LLAMA_PP512.get(d)
                p(f"| {d} | {prefill[d] * 1e3:.1f} | {tps:.0f} | {fmt(bar, 0)} | {verdict(tps, bar)} |")
        p()

    # --- served ---------------------------------------------------------------
    p("### Served: inferd-bench over gRPC, 128 random token ids in, 128 tokens out (EOS ignored), streamed")
    p()
    p(f"Server per dtype: `{meta.get('server_cmd', '?')}`. Load: `{meta.get('bench_cmd', '?')}` "
      f"with `--concurrency 1 --num-requests {meta.get('requests_c1', '?')}` and "
      f"`--concurrency 8 --num-requests {meta.get('requests_c8', '?')}` (one warmup request first; "
      "a seed per scenario, so no prompt is served from the prefix cache).")
    p()
    p("Served step: the mean of `inferd_decode_step_duration_seconds` (steps in which every sequence "
      "computed one token: the forward pass plus scheduling, sampling and handing the tokens to the "
      "streams) over the run, from /metrics; bare step: forward_benchmark at batch 1 and 8 (the engine table "
      "above, run just before the server). This machine's speed drifts by 10-40% within minutes, more than the "
      "overhead the goal bounds (at most 1.10), so the ratio the goal is read on comes from paired rounds: "
      f"{meta.get('pairs', 0)} times, with the server up and idle, the bare step at batch 1 and 8, then at once "
      "a short served run (2 requests at 1 stream, 8 at 8 streams); each round's served step over its own "
      "bare step, and the median of the rounds.")
    p()
    p("Each round then sends the same load as unary `Generate` calls: the same engine road, with the whole "
      "output in one reply, so no per-token write. The streamed step over the unary one is what the stream's "
      "writes cost the step (gRPC and loopback TCP on the same two cores, and the client's reads); the unary "
      "step over the bare one is the rest: scheduling, sampling at temperature 1 over the whole vocabulary, "
      "and the forward pass run in a serving process.")
    p()
    p("| dtype | streams | ok/failed | output tok/s | mean TTFT ms | mean TPOT ms | mean batch "
      "| served step ms | bare step ms (engine table) | served / bare, paired rounds | median, goal <= 1.10 "
      "| weight traffic (roofline share) |")
    p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for d in dtypes:
        for c, batch in (("c1", 1), ("c8", 8)):
            r = served[d][c]
            if r is None:
                why = (errors[d] or "no result").strip().splitlines()
                p(f"| {d} | {batch} | not run: {why[-1] if why else '?'} | | | | | | | | |")
                continue
            server = r.get("server") or {}
            step = server.get("mean_decode_step_s")
            bare = forward[d].get(batch)
            ratios = paired_ratios(d, batch)
            median = statistics.median(ratios) if ratios else None
            goal = "-" if median is None else f"{median:.2f} {'PASS' if median <= 1.10 else 'MISS'}"
            p(f"| {d} | {batch} | {r['completed']}/{r['failed']} | {r['output_token_throughput']:.1f} "
              f"| {r['ttft_s']['mean'] * 1e3:.0f} | {r['tpot_s']['mean'] * 1e3:.2f} "
              f"| {fmt(server.get('mean_batch_size'), 2)} | {fmt(step and step * 1e3, 2)} "
              f"| {fmt(bare and bare * 1e3, 2)} | {', '.join(f'{x:.2f}' for x in ratios) or '-'} | {goal} "
              f"| {roof(d, r['output_token_throughput'], server.get('mean_batch_size') or batch)} |")
    p()
    if any(any(rounds) for rounds in pairs.values()):
        p("The paired rounds (step ms):")
        p()
        p("| dtype | round | bare, batch 1 | streamed, 1 stream | unary, 1 stream | streamed / bare "
          "| bare, batch 8 | streamed, 8 streams | unary, 8 streams | streamed / bare |")
        p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for d in dtypes:
            for n, rnd in enumerate(pairs[d], 1):
                cells = []
                for batch in (1, 8):
                    bare, step, unary = rnd.get(batch, (None, None, None))
                    cells += [fmt(bare and bare * 1e3, 2), fmt(step and step * 1e3, 2),
                              fmt(unary and unary * 1e3, 2), fmt(step / bare if bare and step else None, 2)]
                p(f"| {d} | {n} | " + " | ".join(cells) + " |")
        p()
        p("Where the served step's time over the bare one goes (medians of the rounds):")
        p()
        p("| dtype | streams | streamed / bare | streamed / unary: the per-token writes "
          "| unary / bare: scheduling, sampling, serving process |")
        p("| --- | --- | --- | --- | --- |")
        for d in dtypes:
            for batch in (1, 8):
                whole = paired_ratios(d, batch)
                writes, rest = split_ratios(d, batch)
                p(f"| {d} | {batch} | {fmt(statistics.median(whole) if whole else None, 2)} "
                  f"| {fmt(statistics.median(writes) if writes else None, 2)} "
                  f"| {fmt(statistics.median(rest) if rest else None, 2)} |")
        p()

    # --- the goals --------------------------------------------------------------
    p("### Against llama-server (issue 11's bars)")
    p()
    p("llama-server's figures come from the issue (same model and machine type, upstream 82bb485, `-t 2`); "
      "it cannot run here. Goal: at least 1.2x at 1 stream and 1.5x at 8 streams; the issue gives no "
      "llama-server TTFT, so TTFT has no bar here (its prefill bar is llama.cpp's pp512, f32 about "
      "1,360 tok/s: a 128-token prompt in about 94 ms).")
    p()
    p("Weight GB/s the goal needs: goal tok/s x weight bytes per token / mean batch, what the decode steps "
      "alone must read to reach it (prefill time comes on top); against the DRAM bandwidth read beside that "
      "dtype's runs. Where the first is above the second, the goal was out of this machine's reach during the "
      "run, whatever the code.")
    p()
    p("| dtype | streams | inferd tok/s | llama-server tok/s | goal tok/s | inferd / llama-server | verdict "
      "| weight GB/s the goal needs | DRAM GB/s alongside | inferd TTFT ms |")
    p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for d in dtypes:
        for c, streams in (("c1", 1), ("c8", 8)):
            r = served[d][c]
            ours = r["output_token_throughput"] if r else None
            base = LLAMA_SERVER.get(d, {}).get(c)
            goal = base * GOAL_FACTOR[c] if base else None
            ratio = ours / base if ours is not None and base else None
            ttft = f"{r['ttft_s']['mean'] * 1e3:.0f}" if r else "-"
            batch = ((r or {}).get("server") or {}).get("mean_batch_size") or streams
            needs = goal * weight_mb(d) / 1e3 / batch if goal else None
            p(f"| {d} | {streams} | {fmt(ours)} | {fmt(base, 0)} | {fmt(goal, 0)} | "
              f"{'-' if ratio is None else f'{ratio:.2f}x'} | {verdict(ours, goal)} "
              f"| {fmt(needs)} | {fmt(bandwidth_alongside(d))} | {ttft} |")
    p()

    # --- raw outputs ------------------------------------------------------------
    p("<details><summary>Raw outputs</summary>")
    p()
    for d in dtypes:
        text = read_text(os.path.join(work, f"forward-{d}.txt"))
        if text:
            p(f"forward_benchmark, {d}:")
            p()
            p("```")
            p("\n".join(line for line in text.splitlines() if re.match(r"^(Benchmark|BM_|-)", line)))
            p("```")
            p()
        if errors[d]:
            p(f"server, {d}: did not serve:")
            p()
            p("```")
            p(errors[d].strip())
            p("```")
            p()
        for c in ("c1", "c8"):
            text = read_text(os.path.join(work, f"{d}-{c}.txt"))
            if text:
                p(f"inferd-bench, {d}, {c[1:]} stream(s):")
                p()
                p("```")
                p(text.strip())
                p("```")
                p()
    p("</details>")
    p(meta.get("end_mark", ""))


def print_pair(work, dtype, n):
    rnd = paired_round(work, dtype, int(n))
    parts = [f"batch {b}: bare {bare * 1e3:.2f} ms, served {step * 1e3:.2f} ms ({step / bare:.2f})"
             + (f", unary {unary * 1e3:.2f} ms" if unary else "")
             for b, (bare, step, unary) in sorted(rnd.items())]
    print("; ".join(parts) or "no figures (a run failed)")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--pair":
        print_pair(*sys.argv[2:])
    else:
        main()
