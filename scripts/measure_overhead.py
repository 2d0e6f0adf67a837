"""What the testbed itself adds to each inference, from the records of a real Testbed run (docs/METRICS.md,
"The testbed's own share").

Starts a Testbed on `ideal` (no shaping, no delay, no loss) with the UE on the host's own compute
(`ue_device="host"`: no device emulation), runs one job of `--repetitions` inferences of mobilenet_v2 cut at
`--partition`, and prints the median per inference of:

- the testbed's share = e2e - preprocessing - local compute - delivery - remote compute - downlink
  (splitbed.overhead.testbed_share_parts): what is neither compute nor the link, with preprocessing counted apart;
- its parts from the records' stamps: encode, the gap to the first send, the remote's read lag, decode, lock
  wait and input check up to the tail, tail end to the RESULT sent, the local read lag of the RESULT and the
  result decode; and the RESULT's size and downlink time (which the share leaves out).

Run it once per link backend (`--backend kernel`, `--backend userspace`) before and after a change, with the
same arguments. Needs root (namespaces). Usage:

    .venv/bin/python scripts/measure_overhead.py --backend userspace [--repetitions 30] [--result-mode topk]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="userspace", choices=("kernel", "userspace"))
    parser.add_argument("--partition", default="block_13_project_BN")
    parser.add_argument("--repetitions", type=int, default=30)
    parser.add_argument("--result-mode", default=None, help="full or topk (default: the job's default)")
    parser.add_argument("--weights", default="random:0")
    parser.add_argument("--json", default=None, help="also write the medians and every share to this file")
    parser.add_argument("--records", default=None, help="also write the records (JSON lines) to this file")
    args = parser.parse_args()
    os.environ.setdefault("SPLITBED_OFFLINE", "1")
    from splitbed.overhead import testbed_share_parts
    from splitbed.testbed import Testbed

    job: dict[str, Any] = {"model": "mobilenet_v2", "partition": args.partition, "repetitions": args.repetitions}
    if args.result_mode is not None:
        job["result_mode"] = args.result_mode
    with Testbed("ideal", args.backend, models=["mobilenet_v2"], weights=args.weights, ue_device="host") as bed:
        bed.run(dict(job, repetitions=5))  # warm both nodes' partition paths
        records = [r for r in bed.run(job) if r.get("status") == "ok"]
    if not records:
        raise SystemExit("no successful inference")
    if args.records:
        with open(args.records, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in records)
    parts = [testbed_share_parts(r) for r in records]
    keys = list(parts[0])
    medians = {k: statistics.median(p[k] for p in parts if p[k] is not None) for k in keys
               if any(p[k] is not None for p in parts)}
    means = {k: statistics.fmean(p[k] for p in parts if p[k] is not None) for k in ("testbed_share_ms",)}
    print(f"backend {args.backend}, {len(records)} inferences, result_mode {records[0]['result_mode']}, "
          f"partition {args.partition}")
    for key, value in medians.items():
        print(f"  {key:32s} {value:10.3f}")
    print(f"  {'testbed_share_ms (mean)':32s} {means['testbed_share_ms']:10.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"backend": args.backend, "job": job, "medians": medians, "means": means,
                       "shares": [p["testbed_share_ms"] for p in parts]}, handle, indent=1)


if __name__ == "__main__":
    main()
