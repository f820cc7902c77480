"""SHA-256 of every artefact bmhw generates from the shipped examples: a guard for refactorings that must not
change any generated file (issue: "one room per concern").

For each example checkpoint (BM 1.5-branch, classical = MAC twin, AdderNet PKKD, BiSE) it runs, through the
command line as a user would: ``bmhw quantize`` (.bmq), ``bmhw export`` of that .bmq to ``hls`` (not the MAC
twin, which has no HLS backend), ``verilog`` at
``--pe 1`` and ``--pe 16`` and ``onnx-int`` (not BiSE, which has no integer ONNX graph), and ``bmhw gates --csv`` (the model only; it takes the BM network,
here with the classical one as its ``--twin``), and hashes every file
written (folders: each file by relative path).

    python benchmarks/artifact_hashes.py --write benchmarks/results/artifact_hashes.json   # record
    python benchmarks/artifact_hashes.py --check benchmarks/results/artifact_hashes.json   # compare; exit 1 if any differ
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {"bm15": "lenet_bm15_mnist.pt", "classical": "lenet_classical_mnist.pt",
            "adder": "lenet_adder_pkkd_mnist.pt", "bise": "lenet_bise_mnist.pt"}
BMHW = [sys.executable, "-m", "bmhw.cli"]


def _run(args: list) -> None:
    done = subprocess.run(BMHW + [str(a) for a in args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"bmhw {' '.join(map(str, args))} failed: {done.stderr.strip()}")


def _digest(path: Path) -> dict:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path)) if p != path else path.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def hashes() -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for family, name in EXAMPLES.items():
            bmq = tmp / f"{family}.bmq"
            # The BM example pinned to the exact tables (F = 10, every log-weight kept): the artefacts this guard
            # was recorded with, whatever the quantizer's default widths (docs/datapath.md, "Narrower memories").
            exact = ["--log-frac-bits", "10", "--log-weight-bits", "full"] if family == "bm15" else []
            _run(["quantize", ROOT / "examples" / name, "-o", bmq, *exact])
            out[f"{family}/quantize"] = _digest(bmq)
            for target, extra in (("hls", []), ("verilog-pe1", ["--pe", "1"]), ("verilog-pe16", ["--pe", "16"]),
                                  ("onnx-int", [])):
                if (family, target) in (("classical", "hls"), ("bise", "onnx-int")):
                    continue  # the MAC twin has no HLS backend, BiSE no integer ONNX graph
                dest = tmp / (f"{family}-{target}.onnx" if target == "onnx-int" else f"{family}-{target}")
                _run(["export", bmq, "--target", target.split("-pe")[0], "-o", dest, *extra])
                out[f"{family}/{target}"] = _digest(dest)
            if family != "bm15":
                continue  # --csv takes a BM network; the classical one is costed as its --twin
            csv = tmp / f"{family}-gates.csv"
            twin = ["--twin", ROOT / "examples" / EXAMPLES["classical"]] if family == "bm15" else []
            _run(["gates", bmq, "--csv", csv, *twin])
            out[f"{family}/gates-csv"] = _digest(csv)
            print(f"hashed {family}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, metavar="JSON")
    group.add_argument("--check", type=Path, metavar="JSON")
    args = parser.parse_args()
    now = hashes()
    if args.write:
        args.write.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.write}: {sum(len(v) for v in now.values())} files in {len(now)} artefacts")
        return
    before = json.loads(args.check.read_text())
    differ = [f"{k}/{f}" for k in sorted(set(before) | set(now))
              for f in sorted(set(before.get(k, {})) | set(now.get(k, {})))
              if before.get(k, {}).get(f) != now.get(k, {}).get(f)]
    total = sum(len(v) for v in now.values())
    print(f"{total} files in {len(now)} artefacts: {len(differ)} differ" + "".join(f"\n  {d}" for d in differ))
    raise SystemExit(1 if differ else 0)


if __name__ == "__main__":
    main()
