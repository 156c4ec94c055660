# ruff: noqa: T201  (a command-line script: its printed lines are its report)
"""Benchmark: training and generation speed of the three generators on real PhysioNet 2012 records.

For each generator, with the project's parameters (conf/base/parameters_synthesis.yml) on the
real `features.full.model_input_train` (3200 records):
- training: `--steps` optimisation steps, reported as training records/s (= steps × batch / time);
- generation: `--samples` synthetic records, reported as records/s.
Side by side, in this one run, with a baseline:
- EHRDiff and SynEHRgy: the seed projects' network sizes (EHRDiff [1024, 384, 384, 384, 1024],
  time 384; SynEHRgy 4 layers, 4 heads, d 384, context 1024) against our CPU defaults, and EHRDiff's
  temporal denoiser (`denoiser: temporal`) beside them;
- SynEHRgy generation: our key/value-cached decoding against nanoGPT's decoding, which re-runs the
  whole (cropped) context for every new token, on the same model and the same number of tokens.
K-MIMIC has no such baseline (the seed gives only latent sizes, which ours share); its numbers
stand alone. Untrained SynEHRgy models rarely emit </s>, so its generation runs to max_new_tokens:
records/s there is a lower bound for a trained model, whose records are ~490 tokens.

Input: the latest bundles through the project's catalog, so run
`kedro run --env physionet2012 --pipelines ingestion,features` first.

    python benchmarks/synthesis_speed.py [--steps 30] [--samples 256] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SOURCE = "physionet2012"
FEATURE_SET = "full"
SEED_EHRDIFF = {"hidden_dims": [1024, 384, 384, 384, 1024], "time_dim": 384}
# batch 8 × context 1024 = the same tokens per step as our 32 × 256
SEED_GPT = {"n_layer": 4, "n_head": 4, "n_embd": 384, "block_size": 1024, "batch_size": 8}


def load_inputs(env: str) -> dict[str, Any]:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(PROJECT_ROOT)
    with KedroSession.create(project_path=PROJECT_ROOT, env=env) as session:
        context = session.load_context()
        catalog = context.catalog
        return {
            "train": catalog.load(f"features.{FEATURE_SET}.model_input_train"),
            "spec": catalog.load(f"features.{FEATURE_SET}.feature_spec"),
            "splits": catalog.load("features.splits"),
            "timeseries": catalog.load("ingestion.timeseries"),
            "static": catalog.load("ingestion.static"),
            "params": context.params,
        }


def timed(func, *args, **kwargs) -> tuple[Any, float]:
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - start


def bench_ehrdiff(data: dict, params: dict, steps: int, seed_steps: int, samples: int, device: str) -> list[tuple]:
    from ehr_adversarial.synthesis import ehrdiff
    from ehr_adversarial.synthesis.common import scaled_fill

    fill = scaled_fill(data["spec"])
    rows = []
    configurations = (("ours (CPU defaults)", {}, steps), ("seed size (EHRDiff)", SEED_EHRDIFF, seed_steps),
                      ("ours, temporal denoiser", {"denoiser": "temporal"}, steps))
    for label, sizes, n_steps in configurations:
        block = params | sizes | {"max_steps": n_steps}
        model, train_s = timed(ehrdiff.fit_ehrdiff_on_bundle, data["train"], block, device, 0)
        _, sample_s = timed(ehrdiff.sample_ehrdiff, model, samples, block, device, 0, fill, data["splits"]["record_id"].to_numpy())
        n_params = sum(p.numel() for p in model.parameters())
        rows.append(("EHRDiff", label, n_params, n_steps * block["batch_size"] / train_s, samples / sample_s))
    return rows


def bench_synehrgy(data: dict, params: dict, steps: int, seed_steps: int, samples: int, device: str) -> tuple[list[tuple], list[tuple]]:
    from ehr_adversarial.synthesis import synehrgy
    from ehr_adversarial.synthesis.tokenizer import BOS, RecordTokenizer

    train_ids = data["splits"].loc[data["splits"]["split"] == "train", "record_id"]
    timeseries = data["timeseries"][data["timeseries"]["record_id"].isin(train_ids)]
    static = data["static"][data["static"]["record_id"].isin(train_ids)]
    tokenizer = RecordTokenizer.fit(timeseries, static, **{k: v for k, v in params["tokenizer"].items()})
    corpus, tokenize_s = timed(tokenizer.tokenize, timeseries, static)
    tokens_per_record = len(corpus["tokens"]) / len(corpus["record_id"])
    print(f"tokenizer: {len(corpus['record_id'])} records, {tokens_per_record:.0f} tokens/record, "
          f"tokenised at {len(corpus['record_id']) / tokenize_s:.0f} records/s")
    rows, decoding = [], []
    for label, sizes, n_steps in (("ours (CPU defaults)", {}, steps), ("seed size (SynEHRgy)", SEED_GPT, seed_steps)):
        block = params | sizes | {"max_steps": n_steps}
        model, train_s = timed(synehrgy.fit_gpt, corpus, tokenizer.vocab_size, block, device, 0)
        records_per_s_train = n_steps * block["batch_size"] * block["block_size"] / tokens_per_record / train_s
        generated, sample_s = timed(
            synehrgy.sample_corpus, model, samples, block, device, 0, data["splits"]["record_id"].to_numpy(), tokenizer.grammar()
        )
        mean_len = len(generated["tokens"]) / samples
        n_params = sum(p.numel() for p in model.parameters())
        rows.append(("SynEHRgy", f"{label}, {mean_len:.0f} tokens/record generated", n_params, records_per_s_train, samples / sample_s))
        if not sizes:
            decoding = bench_decoding(model, BOS, device)
    return rows, decoding


def bench_decoding(model, bos: int, device: str, batch: int = 32, new_tokens: int = 300) -> list[tuple]:
    """Tokens/s of cached decoding against nanoGPT's re-run of the cropped context per token."""
    from ehr_adversarial.torch_utils import resolve_device

    model = model.to(resolve_device(device)).eval()
    start = torch.full((batch, 1), bos, dtype=torch.long, device=next(model.parameters()).device)

    @torch.no_grad()
    def recompute(idx):
        for _ in range(new_tokens):
            logits, _ = model(idx[:, -model.block_size :])
            logits = logits[:, -1, :]
            kth = torch.topk(logits, 50, dim=-1).values[:, -1:]
            probs = torch.softmax(logits.masked_fill(logits < kth, float("-inf")), dim=-1)
            idx = torch.cat((idx, torch.multinomial(probs, 1)), dim=1)
        return idx

    cached_out, cached_s = timed(model.generate, start, new_tokens, top_k=50)
    full_out, full_s = timed(recompute, start)
    assert cached_out.shape == full_out.shape
    model.cpu()
    return [("key/value cache (ours)", batch * new_tokens / cached_s), ("re-run context (nanoGPT)", batch * new_tokens / full_s)]


def bench_kmimic(data: dict, params: dict, steps: int, samples: int, device: str) -> list[tuple]:
    from ehr_adversarial.synthesis import kmimic
    from ehr_adversarial.synthesis.common import scaled_fill

    b = data["train"]
    block = copy.deepcopy(params)
    for stage in ("static_vae", "temporal_vae", "latent_gan"):
        block[stage]["max_steps"] = steps
    static_vae, s1 = timed(kmimic.fit_static_vae, b["static"], block["static_vae"], device, 0)
    temporal_vae, s2 = timed(kmimic.fit_temporal_vae, b["X"], b["mask"], block["temporal_vae"], device, 0)
    gan, s3 = timed(kmimic.fit_latent_gan, static_vae, temporal_vae, b["static"], b["X"], b["mask"], b["y"], block["latent_gan"], device, 0)
    _, sample_s = timed(
        kmimic.sample_kmimic, static_vae, temporal_vae, gan, samples, block, device, 0, scaled_fill(data["spec"]), data["splits"]["record_id"].to_numpy()
    )
    stages = [("static VAE", s1, block["static_vae"]["batch_size"]), ("temporal VAE", s2, block["temporal_vae"]["batch_size"]),
              ("WGAN-GP (per generator step, 5 critic steps)", s3, block["latent_gan"]["batch_size"])]
    rows = []
    for name, seconds, batch in stages:
        rows.append(("K-MIMIC", f"ours: {name}", None, steps * batch / seconds, None))
    rows.append(("K-MIMIC", "ours: sampling (all three stages)", sum(p.numel() for m in (static_vae, temporal_vae, gan) for p in m.parameters()), None, samples / sample_s))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="physionet2012")
    parser.add_argument("--steps", type=int, default=30, help="training steps timed per model")
    parser.add_argument("--seed-steps", type=int, default=5, help="training steps timed for the seed-size baselines")
    parser.add_argument("--samples", type=int, default=256, help="records generated per model (SynEHRgy: at most 32)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--generators", default="ehrdiff,synehrgy,kmimic")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    data = load_inputs(args.env)
    params = data["params"]["synthesis"][SOURCE]
    wanted = args.generators.split(",")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device {args.device}, load average {os.getloadavg()[0]:.1f} at start")
    rows, decoding = [], []
    if "ehrdiff" in wanted:
        rows += bench_ehrdiff(data, params["ehrdiff"], args.steps, args.seed_steps, args.samples, args.device)
    if "synehrgy" in wanted:
        more, decoding = bench_synehrgy(data, params["synehrgy"], args.steps, args.seed_steps, min(args.samples, 32), args.device)
        rows += more
    if "kmimic" in wanted:
        rows += bench_kmimic(data, params["kmimic"], args.steps, args.samples, args.device)
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| generator | configuration | parameters | training records/s | generation records/s |")
    print("|---|---|---:|---:|---:|")
    for generator, label, n_params, train_rate, sample_rate in rows:
        cells = [f"{n_params / 1e6:.2f} M" if n_params else "", f"{train_rate:.0f}" if train_rate else "", f"{sample_rate:.1f}" if sample_rate else ""]
        print(f"| {generator} | {label} | " + " | ".join(cells) + " |")
    by_model = {}
    for generator, _label, _, train_rate, sample_rate in rows:
        by_model.setdefault(generator, []).append((train_rate, sample_rate))
    for generator, pairs in by_model.items():
        if len(pairs) >= 2 and generator != "K-MIMIC":
            (t0, s0), (t1, s1) = pairs[:2]
            print(f"\n{generator}: ours / seed size: training {t0 / t1:.1f}×, generation {s0 / s1:.1f}× faster")
    if decoding:
        (_, cached), (_, full) = decoding
        print(f"\nSynEHRgy decoding (32 sequences × 300 tokens, CPU defaults): key/value cache {cached:.0f} tokens/s, "
              f"re-run context {full:.0f} tokens/s, ratio {cached / full:.1f}×")


if __name__ == "__main__":
    main()
