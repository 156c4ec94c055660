"""A small decoder-only transformer (GPT), in the tone of nanoGPT, for tokenised patient records.

SynEHRgy trains a GPT with 4 layers, 4 heads, d = 384 and context 1024; those are the defaults
here, every size a parameter. Pre-norm blocks, learned positions, weight tying between the token
embedding and the output head.

generate() keeps a key/value cache so each new token costs one position, not a re-run of the whole
context. When a sequence outgrows `block_size`, the cache is rebuilt from the last half block
(positions restart at 0), the same cropping nanoGPT applies to its context.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Per-layer keys/values, preallocated to block_size positions."""

    def __init__(self, n_layer: int, batch: int, n_head: int, block_size: int, head_size: int, device, dtype):
        shape = (batch, n_head, block_size, head_size)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.length = 0


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        assert n_embd % n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.resid_dropout = nn.Dropout(dropout)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        is_causal = True
        if cache is not None:
            start = cache.length
            cache.k[layer][:, :, start : start + T] = k
            cache.v[layer][:, :, start : start + T] = v
            k = cache.k[layer][:, :, : start + T]
            v = cache.v[layer][:, :, : start + T]
            # a prefill starts at 0 (causal); afterwards one new token sees the whole cache
            assert start == 0 or T == 1, "the cache takes a prefill from position 0, then one token at a time"
            is_causal = start == 0
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=is_causal and T > 1
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        block_size: int = 1024,
        n_layer: int = 4,
        n_head: int = 4,
        n_embd: int = 384,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.block_size = block_size
        self.n_head = n_head
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None):
        """Logits (B, T, V); with targets also the mean cross-entropy (targets < 0 are ignored)."""
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        assert start + T <= self.block_size, f"sequence of {start + T} tokens exceeds block_size {self.block_size}"
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        if cache is not None:
            cache.length += T
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def _prefill(self, idx: torch.Tensor) -> tuple[torch.Tensor, KVCache]:
        head_size = self.wte.embedding_dim // self.n_head
        cache = KVCache(len(self.blocks), idx.shape[0], self.n_head, self.block_size, head_size, idx.device, self.wte.weight.dtype)
        logits, _ = self(idx, cache=cache)
        return logits[:, -1, :], cache

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        eos_id: int | None = None,
        generator: torch.Generator | None = None,
        allowed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Extend idx (B, T) by sampling; sequences that emitted eos_id are padded with eos_id.

        `allowed` (L, V) bool, optional, constrains the vocabulary: row i holds the tokens the
        i-th new token may be, and the last row applies to every token after the first L − 1.
        Stops early once every sequence has ended. Returns (B, T + n) with n ≤ max_new_tokens.
        """
        logits, cache = self._prefill(idx[:, -self.block_size :])
        finished = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        out = [idx]
        for i in range(max_new_tokens):
            logits = logits / max(temperature, 1e-6)
            if allowed is not None:
                logits = logits.masked_fill(~allowed[min(i, len(allowed) - 1)], float("-inf"))
            if top_k is not None and top_k < logits.size(-1):
                kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits.float(), dim=-1)
            # multinomial with a CPU generator needs CPU probabilities
            next_id = torch.multinomial(probs.cpu() if generator is not None else probs, 1, generator=generator).to(idx.device)
            if eos_id is not None:
                next_id = torch.where(finished[:, None], torch.full_like(next_id, eos_id), next_id)
                finished |= next_id[:, 0] == eos_id
            out.append(next_id)
            if eos_id is not None and bool(finished.all()):
                break
            if cache.length >= self.block_size:
                logits, cache = self._prefill(torch.cat(out, dim=1)[:, -(self.block_size // 2) :])
            else:
                logits, _ = self(next_id, cache=cache)
                logits = logits[:, -1, :]
        return torch.cat(out, dim=1)
