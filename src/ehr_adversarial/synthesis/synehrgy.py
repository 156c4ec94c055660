"""SynEHRgy training and sampling: a GPT over tokenised records.

Training reads windows of block_size + 1 tokens from the concatenation of all training sequences
(each <s> … </s>): a share `record_start_fraction` starts at a record's <s> (the context sampling
starts from), the rest anywhere, as nanoGPT does with text, so records longer than the context are
still learned piecewise. Sampling starts every record from <s> and draws tokens with temperature and
top-k until </s> or `max_new_tokens`, chunk by chunk; see tokenizer.RecordTokenizer.detokenize for
how generated sequences are read back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ehr_adversarial.models.gpt import GPT
from ehr_adversarial.torch_utils import resolve_device, seed_everything

from .common import build_generator, chunks, synthetic_record_ids
from .tokenizer import BOS, EOS, TokenCorpus, sequences_corpus

logger = logging.getLogger(__name__)


def _window_starts(record_starts: torch.Tensor, n_positions: int, batch_size: int, aligned: float,
                   generator: torch.Generator) -> torch.Tensor:
    """Window starts: a share `aligned` at a random record's <s>, the rest anywhere in the stream."""
    starts = torch.randint(n_positions, (batch_size,), generator=generator)
    at_record = torch.rand(batch_size, generator=generator) < aligned
    chosen = record_starts[torch.randint(len(record_starts), (batch_size,), generator=generator)]
    return torch.where(at_record, chosen, starts)


def fit_gpt(corpus: Mapping[str, np.ndarray], vocab_size: int, params: Mapping[str, Any], device: str, seed: int) -> GPT:
    """Train the GPT on a training token corpus; returns it in eval mode on CPU."""
    generator = seed_everything(seed)
    torch_device = resolve_device(device)
    stream = torch.as_tensor(np.asarray(corpus["tokens"], dtype=np.int64))
    block = int(params["block_size"])
    if len(stream) <= block:
        raise ValueError(
            f"the training corpus has {len(stream)} tokens, not more than block_size {block}; "
            "lower synthesis.<source>.synehrgy.block_size or train on more records"
        )
    config = {
        "architecture": "gpt",
        "hyperparameters": {
            "vocab_size": int(vocab_size),
            "block_size": block,
            "n_layer": int(params["n_layer"]),
            "n_head": int(params["n_head"]),
            "n_embd": int(params["n_embd"]),
            "dropout": float(params["dropout"]),
        },
        "n_train_records": int(len(corpus["record_id"])),
        "n_train_tokens": int(len(stream)),
    }
    model = build_generator(config).to(torch_device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params["learning_rate"], weight_decay=params["weight_decay"], betas=(0.9, 0.95))
    model.train()
    offsets = torch.arange(block + 1)
    # Sampling reads a record from its <s>, covariates and label first; windows that start there teach
    # the measurements that follow to depend on them (random windows rarely hold a record's start).
    aligned = float(params.get("record_start_fraction", 0.0))
    if not 0.0 <= aligned <= 1.0:
        raise ValueError(f"synehrgy.record_start_fraction is {aligned}; it must lie in [0, 1].")
    record_starts = torch.as_tensor(np.asarray(corpus["offsets"][:-1], dtype=np.int64)).clamp(max=len(stream) - block - 1)
    for step in (bar := tqdm(range(int(params["max_steps"])), desc="SynEHRgy GPT training", unit="step", disable=None)):
        starts = _window_starts(record_starts, len(stream) - block, int(params["batch_size"]), aligned, generator)
        window = stream[starts[:, None] + offsets].to(torch_device)
        _, loss = model(window[:, :-1], window[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), params["grad_clip"])
        optimizer.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
            logger.info("SynEHRgy step %d: loss %.4f", step, loss.item())
    trained = model.cpu().eval()
    trained.config = config
    return trained


def sample_corpus(
    model: GPT, n_samples: int, params: Mapping[str, Any], device: str, seed: int, real_ids: np.ndarray, grammar: np.ndarray | None = None
) -> TokenCorpus:
    """n_samples generated token sequences (a corpus with new record ids), chunk by chunk.

    `grammar` (RecordTokenizer.grammar()) constrains each position to the tokens the record format
    allows there, so every sequence decodes to a record with all covariates and a label.
    """
    generator = seed_everything(seed)
    torch_device = resolve_device(device)
    model = model.to(torch_device).eval()
    allowed = torch.as_tensor(grammar, device=torch_device) if grammar is not None else None
    sequences: list[np.ndarray] = []
    unfinished = 0
    for rows in chunks(n_samples, params["sample_batch_size"], "SynEHRgy sampling"):
        start = torch.full((rows.stop - rows.start, 1), BOS, dtype=torch.long, device=torch_device)
        out = model.generate(
            start,
            int(params["max_new_tokens"]),
            temperature=float(params["temperature"]),
            top_k=params["top_k"],
            eos_id=EOS,
            generator=generator,
            allowed=allowed,
        ).cpu().numpy()
        ended = out == EOS
        unfinished += int((~ended.any(axis=1)).sum())
        # cut each sequence after its first </s>
        length = np.where(ended.any(axis=1), ended.argmax(axis=1) + 1, out.shape[1])
        sequences.extend(row[:k] for row, k in zip(out, length, strict=True))
    if unfinished:
        logger.warning("SynEHRgy: %d of %d sequences reached max_new_tokens without </s>", unfinished, n_samples)
    model.cpu()
    return sequences_corpus(synthetic_record_ids(n_samples, real_ids), sequences)
