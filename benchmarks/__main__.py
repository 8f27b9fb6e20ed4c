"""`python -m benchmarks [--quick]`: the edge benchmark, then the pipeline benchmark at the edge's rate.

Benchmarks report, they don't gate: the exit code is 0 whatever the figures (non-zero only if a benchmark could not
run at all), and every missed target is printed as MISSED.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks import edge_throughput, pipeline

console = Console(width=edge_throughput.console.width)


def missed(edge: dict[str, Any], pipe: dict[str, Any]) -> list[str]:
    out = []
    for name in edge_throughput.SETS:
        if name in edge and not edge[name]["met"]:
            out.append(f"edge {name}: edge/bare {edge[name]['ratio']:.2f} < {edge_throughput.TARGET_RATIO:.2f}")
        if name in edge and not edge[name].get("cpu_met", True):
            out.append(f"edge {name}: edge CPU {edge[name]['cpu_extra_ms']:+.2f} ms/instance over bare > "
                       f"+{edge_throughput.TARGET_CPU_EXTRA_MS:.1f}")
        if name in edge and not edge[name].get("scale_met", True):
            out.append(f"edge {name}: 4 associations {edge[name]['scale_4assoc']:.2f}× one < "
                       f"{edge_throughput.TARGET_SCALE_4}×")
    if pipe:
        ok, ref = pipe["keeps_up"], pipe["edge_rate_reference"]
        thr, st, lat = pipe["throughput"], pipe["streams"], pipe["latency"]
        if not ok["pipeline"]:
            out.append(f"pipeline: {thr['pipeline_rate']:.0f} ev/s end to end < 0.9 × the edge's accepted "
                       f"{thr['edge_rate']:.0f} inst/s in the same run")
        source = pipe.get("edge_rate_source", "edge benchmark")  # or the pipeline run's own phase 1
        if not ok["pipeline_vs_reference"]:
            out.append(f"pipeline: {thr['pipeline_rate']:.0f} ev/s < {ref:.0f} inst/s ({source})")
        if not ok["streams_vs_reference"]:
            out.append(f"streams alone: {st['streams_rate']:.0f} ev/s < {ref:.0f} inst/s ({source})")
        if not lat["met"]:
            out.append(f"latency: P99 {lat['p99_s']:.2f} s ≥ {pipeline.LATENCY_TARGET_S:.0f} s at "
                       f"{lat['achieved_rate']:.0f} exams/s")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sets and fewer runs (a few minutes)")
    parser.add_argument("--only", choices=("edge", "pipeline", "streams", "recovery"), help="run one benchmark")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M")
    edge: dict[str, Any] = {}
    pipe: dict[str, Any] = {}
    if args.only in (None, "edge"):
        console.rule("edge throughput")
        edge = edge_throughput.main(["--runs", "3", "--ct", "100", "--small", "600", "--stall-sample", "40"]
                                    if args.quick else [])
    streams_res: dict[str, Any] = {}
    if args.only == "streams":  # not in the default run: the pipeline benchmark measures streams alone too
        from benchmarks import streams

        console.rule("streams (radpulse worker vs Faust's ceiling)")
        streams_res = streams.main(["--quick"] if args.quick else [])
    recovery_res: dict[str, Any] = {}
    if args.only == "recovery":  # not in the default run: it writes a year of changelog (a few minutes)
        from benchmarks import recovery

        console.rule("restart recovery (a year of history vs retain_days)")
        recovery_res = recovery.main(["--quick"] if args.quick else [])
    if args.only in (None, "pipeline"):
        console.rule("pipeline")
        # the reference: the edge's own throughput on small instances from the edge benchmark
        reference = edge["small32k"]["edge"] if "small32k" in edge else None
        pipe = pipeline.main(["--quick"] if args.quick else [], edge_rate=reference)
    problems = missed(edge, pipe) + list(streams_res.get("missed", []))  # the summary names every miss of the run
    console.rule("summary")
    if problems:
        for line in problems:
            console.print(f"[bold red]MISSED[/] {line}")
    else:
        console.print("every target met")
    if args.json:
        args.json.write_text(json.dumps({"started": started, "quick": args.quick, "edge": edge, "pipeline": pipe,
                                         "streams": streams_res, "recovery": recovery_res},
                                        indent=2, default=str))
        console.print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
