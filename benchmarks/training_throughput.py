# ruff: noqa: T201  (a command-line script: its printed lines are its report)
"""Benchmark: training throughput (samples/s per epoch) of the torch models, side by side.

For each model of the training pipeline (`lstm_sun2018` on the 18 `sun2018` features, `dssm` on
the 36 `full` features with mask and delta), on tensors of the PhysioNet 2012 train split's shape
(3200 × 48 × F; throughput does not depend on the values, so they are random), measured in this
one run:

1. ours: one epoch of the pipeline's training loop (`torch_loop.fit`, batched, whole split on
   the device, the batch size of parameters_training.yml), on 1 CPU thread (the pipeline default)
   and on all CPU threads;
2. the reference: a per-record loop (batch size 1, one optimiser step per record), as a naive
   implementation trains, on a subset of records;
3. on a CUDA device when present: ours in fp32 and with AMP (fp16 autocast).

    python benchmarks/training_throughput.py [--records 3200] [--reference-records 200] [--epochs 2]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from ehr_adversarial.models import build_model, model_inputs
from ehr_adversarial.training.torch_loop import fit, limited_threads, to_tensors

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"lstm_sun2018": 18, "dssm": 36}
N_STATIC = 8


def bundle(n: int, n_features: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.14).astype(np.int64)
    y[:2] = [0, 1]
    return {"X": rng.random((n, 48, n_features), dtype=np.float32),
            "mask": rng.random((n, 48, n_features)) < 0.2,
            "delta": rng.random((n, 48, n_features), dtype=np.float32),
            "static": rng.random((n, N_STATIC), dtype=np.float32), "y": y}


def model_config(block: dict, n_features: int) -> dict:
    return {"architecture": block["architecture"], "hyperparameters": block["hyperparameters"],
            "n_features": n_features, "n_static": N_STATIC, "n_hours": 48}


def ours(block: dict, data: dict, device: torch.device, epochs: int, threads: int, amp: bool) -> float:
    """Samples/s of the pipeline's loop: median over epochs (the monitor pass is on 64 records)."""
    config = {**copy.deepcopy(block), "max_epochs": 1, "patience": 1, "amp": amp}
    train, monitor = to_tensors(data, device), to_tensors({k: v[:64] for k, v in data.items()}, device)
    n = train["y"].shape[0]
    rates = []
    with limited_threads(threads):
        model = build_model(model_config(block, data["X"].shape[2])).to(device)
        for epoch in range(epochs + 1):  # the first epoch warms up kernels and allocator
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fit(model, train, monitor, config, torch.Generator().manual_seed(epoch), "benchmark")
            if device.type == "cuda":
                torch.cuda.synchronize()
            if epoch:
                rates.append(n / (time.perf_counter() - start))
    return float(np.median(rates))


def per_record(block: dict, data: dict, device: torch.device, n_records: int, threads: int) -> float:
    """Samples/s of a batch-1 loop: one forward, backward and Adam step per record."""
    tensors = to_tensors({k: v[:n_records] for k, v in data.items()}, device)
    with limited_threads(threads):
        model = build_model(model_config(block, data["X"].shape[2])).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=block["optimizer"]["lr"])
        start = time.perf_counter()
        for i in range(n_records):
            record = {k: v[i : i + 1] for k, v in tensors.items()}
            loss = F.cross_entropy(model(*model_inputs(model, record)), record["y"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n_records / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=3200)
    parser.add_argument("--reference-records", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    params = yaml.safe_load((ROOT / "conf/base/parameters_training.yml").read_text())
    blocks = params["training"]["physionet2012"]
    all_threads = os.cpu_count() or 1
    cpu = torch.device("cpu")
    print(f"machine: {platform.processor() or platform.machine()}, {all_threads} CPU threads, "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    print(f"{args.records} records × 48 h; samples/s per epoch (median of {args.epochs} epochs)\n")
    print(f"| model | batch | per-record loop (1 thread) | ours, 1 thread | ours, {all_threads} threads "
          "| ours 1 thread / per-record | 1 thread / all threads |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, n_features in MODELS.items():
        block = blocks[name]
        data = bundle(args.records, n_features)
        reference = per_record(block, data, cpu, args.reference_records, 1)
        one = ours(block, data, cpu, args.epochs, 1, amp=False)
        many = ours(block, data, cpu, args.epochs, all_threads, amp=False)
        print(f"| {name} | {block['batch_size']} | {reference:.0f} | {one:.0f} | {many:.0f} "
              f"| {one / reference:.1f}× | {one / many:.2f}× |", flush=True)
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        print("\n| model | ours CPU 1 thread | ours GPU fp32 | ours GPU AMP | GPU fp32 / CPU | AMP / fp32 |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, n_features in MODELS.items():
            block = blocks[name]
            data = bundle(args.records, n_features)
            one = ours(block, data, cpu, args.epochs, 1, amp=False)
            fp32 = ours(block, data, gpu, args.epochs, 1, amp=False)
            amp = ours(block, data, gpu, args.epochs, 1, amp=True)
            print(f"| {name} | {one:.0f} | {fp32:.0f} | {amp:.0f} | {fp32 / one:.1f}× | {amp / fp32:.2f}× |",
                  flush=True)


if __name__ == "__main__":
    main()
