"""``python -m synthetic_hospital {plan,send,write}`` (``radpulse simulate`` calls ``main``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time as _time
from collections.abc import Sequence
from datetime import date

from synthetic_hospital.exams import PIXEL_MODES, write_truth
from synthetic_hospital.hospital import default_hospital
from synthetic_hospital.plan import plan_days
from synthetic_hospital.sender import send, write_dicom_dir

# ------------------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m synthetic_hospital {plan,send,write}``: plan a seeded period, write truth, send or write."""
    parser = argparse.ArgumentParser(prog="python -m synthetic_hospital", description=main.__doc__)
    parser.add_argument("action", choices=("plan", "send", "write"))
    parser.add_argument("--start", default=None, help="first local day, YYYY-MM-DD (default: today)")
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tz", default="Asia/Shanghai")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--pixels", choices=PIXEL_MODES, default="small")
    parser.add_argument("--devices", default="", help="comma-separated device keys (default: all)")
    parser.add_argument("--truth", default=None, help="write the ground truth JSON here")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11112)
    parser.add_argument("--called-ae", default="RADPULSE")
    parser.add_argument("--hl7-port", type=int, default=None,
                        help="also send HL7 orders/arrivals (MLLP, this port) and MPPS (DICOM port)")
    parser.add_argument("--per-exam-associations", action="store_true")
    parser.add_argument("--interleave", action="store_true", help="keep every device's association open")
    parser.add_argument("--out", default="radpulse-data/sim-dicom", help="folder for 'write'")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    devices = default_hospital()
    if args.devices:
        wanted = {k.strip() for k in args.devices.split(",") if k.strip()}
        unknown = wanted - {d.key for d in devices}
        if unknown:
            parser.error(f"unknown device keys {sorted(unknown)}; known: {[d.key for d in devices]}")
        devices = [d for d in devices if d.key in wanted]
    start = date.fromisoformat(args.start) if args.start else date.today()
    t0 = _time.perf_counter()
    plan = plan_days(devices, start, args.days, args.seed, args.tz, args.scale, pixels=args.pixels)
    print(f"planned {len(plan.exams)} exams, {plan.n_instances} instances in {_time.perf_counter() - t0:.2f}s",
          file=sys.stderr)
    if args.truth:
        print(f"truth → {write_truth(plan, args.truth)}", file=sys.stderr)
    if args.action == "send":
        stats = send(plan, args.host, args.port, args.called_ae, progress=not args.quiet,
                     per_device_associations=not args.per_exam_associations, interleave=args.interleave,
                     workflow=args.hl7_port is not None, hl7_port=args.hl7_port)
        print(json.dumps(dataclasses.asdict(stats) | {"rate_per_s": round(stats.rate_per_s, 1)}, indent=1))
        return 0 if stats.ok else 1
    if args.action == "write":
        for key, path in write_dicom_dir(plan, args.out).items():
            print(f"{key}\t{path}")
    return 0
