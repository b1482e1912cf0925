"""The GPU check, one command: train the MNIST default, score it, run the benchmark cases, print what the README needs.

    python -m benchmarks.gpu --data-dir DIR              # DIR holds MNIST/raw (add --download when online)
    python -m benchmarks.gpu --data-dir DIR --amp bf16   # the same with bf16 autocast

Each stage is the documented command, run as a subprocess and timed from outside: `train.py` (wall seconds),
`sample.py --eval` (judge accuracy and classifier-FID at s = 1 and CFG s = 3), `python -m benchmarks.bench`
(images/s, the guided step, samplers, peak memory). Everything lands in <out>/ (default runs/gpu-check), and a
summary is printed and written as <out>/summary.json. Meant to finish in <= 10 minutes on one recent GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch

from toydiff.cli import ArgumentParser, path, positive_int, run_cli
from toydiff.errors import UserError
from toydiff.files import check_creatable, write_json
from toydiff.runtime import resolve_device

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))        # the repository: train.py, sample.py


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=path, required=True, help="torchvision data folder holding MNIST/raw")
    p.add_argument("--download", action="store_true", help="let torchvision download MNIST into --data-dir")
    p.add_argument("--out", type=path, default=os.path.join("runs", "gpu-check"), help="where the run goes")
    p.add_argument("--device", default="cuda")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    p.add_argument("--n", type=positive_int, default=100, help="samples per class scored by the judge")
    return p


def stage(name: str, argv: list[str]) -> tuple[float, str]:
    """Run one documented command; (wall seconds, its stdout). A failure stops the check with its last line."""
    print(f"[{name}] {' '.join(argv)}", flush=True)
    t0 = time.time()
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT)
    seconds = time.time() - t0
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"{name} failed (exit {proc.returncode}): {last}")
    print(f"[{name}] {seconds:.1f} s", flush=True)
    return seconds, proc.stdout


def main(argv: list[str] | None = None) -> None:
    run_cli(lambda: _main(argv))


def _main(argv: list[str] | None) -> None:
    args = build_parser().parse_args(argv)
    if not torch.cuda.is_available() or resolve_device(args.device).type != "cuda":    # before anything is made
        where = "torch sees no CUDA GPU here" if not torch.cuda.is_available() else f"--device {args.device} is not one"
        raise UserError(f"the GPU check measures a CUDA GPU, and {where}; python -m benchmarks.bench measures any "
                        "device")
    out = os.path.abspath(check_creatable(args.out, what="output folder (--out)", folder=True))   # train.py makes it
    args.data_dir = os.path.abspath(args.data_dir)
    run, samples = os.path.join(out, "mnist"), os.path.join(out, "samples")
    data = ["--data-dir", args.data_dir] + (["--download"] if args.download else [])
    train_s, _ = stage("train", ["train.py", "--dataset", "mnist", *data, "--run", run, "--overwrite",
                                 "--device", args.device, "--amp", args.amp, "--no-progress"])
    eval_s, _ = stage("eval", ["sample.py", "--run", run, "--eval", "--n", str(args.n), "--out", samples,
                               "--device", args.device])
    bench_json = os.path.join(out, "bench.json")
    bench_s, _ = stage("bench", ["-m", "benchmarks.bench", "train", "guided-step", "samplers", "memory",
                                 "--dataset", "mnist", "--data-dir", args.data_dir, "--run", run,
                                 "--device", args.device, "--json", bench_json])
    metrics = json.load(open(os.path.join(samples, "metrics.json")))
    bench = json.load(open(bench_json))
    summary = {
        "device": bench["device"], "amp": args.amp,
        "train_wall_seconds": round(train_s, 1), "eval_wall_seconds": round(eval_s, 1),
        "bench_wall_seconds": round(bench_s, 1),
        "accuracy": {k: v["accuracy"] for k, v in metrics["sets"].items()},
        "fid": {k: v["fid"] for k, v in metrics["sets"].items()}, "fid_real_floor": metrics["real"]["fid"],
        "train_images_per_s": bench["cases"]["train"]["toydiff_train_loop_images_per_s"],
        "max_memory_mb": bench["cases"]["memory"].get("cuda_max_allocated_mb_training"),
    }
    write_json(os.path.join(out, "summary.json"), summary)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
