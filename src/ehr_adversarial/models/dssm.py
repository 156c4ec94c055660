"""DSSM (ehr_classification): a bi-LSTM with self-attention over time plus a static encoder.

Time series: each hour's input is the scaled values x, optionally concatenated with
the missingness mask and the hours since the last observation (delta), so the
network can tell an imputed value from a measured one (the GRU-D idea). A
2-layer bidirectional LSTM (hidden 32, dropout 0.2) reads the 48 hours, 4-head
self-attention mixes the steps, and the last step (every record has all 48 hourly
steps, so hour 47 is the last valid one) goes through Linear + Tanh. The static
features go through an MLP (S → 32). Both are concatenated into an MLP classifier
that returns 2 logits. `input_summary` (e.g. `["mean", "last"]`) adds those summaries of each
feature over the hours, taken from x, to the classifier's input (a wide path beside the recurrent one).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ehr_adversarial.models.hourly_summary import check_summaries, hourly_summary


class DSSM(nn.Module):
    inputs = ("x", "mask", "delta", "static")

    def __init__(
        self,
        n_features: int,
        n_static: int,
        hidden_size: int = 32,
        num_layers: int = 2,
        dropout: float = 0.2,
        n_heads: int = 4,
        static_size: int = 32,
        classifier_size: int = 64,
        use_mask: bool = True,
        use_delta: bool = True,
        n_classes: int = 2,
        input_summary: Sequence[str] = (),
    ):
        super().__init__()
        self.use_mask, self.use_delta = use_mask, use_delta
        self.input_summary = check_summaries(input_summary)
        n_inputs = n_features * (1 + int(use_mask) + int(use_delta))
        d_model = 2 * hidden_size
        self.lstm = nn.LSTM(
            n_inputs, hidden_size, num_layers=num_layers, batch_first=True,
            bidirectional=True, dropout=dropout if num_layers > 1 else 0.0,
        )
        self.attention = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.series_head = nn.Sequential(nn.Linear(d_model, d_model), nn.Tanh())
        self.static_encoder = nn.Sequential(nn.Linear(n_static, static_size), nn.ReLU())
        self.classifier = nn.Sequential(
            nn.Linear(d_model + static_size + len(self.input_summary) * n_features, classifier_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(classifier_size, n_classes),
        )

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, delta: torch.Tensor, static: torch.Tensor
    ) -> torch.Tensor:
        channels = [x]
        if self.use_mask:
            channels.append(mask.to(x.dtype))
        if self.use_delta:
            channels.append(delta)
        h, _ = self.lstm(torch.cat(channels, dim=-1))  # (B, T, 2H)
        attended, _ = self.attention(h, h, h, need_weights=False)
        h = self.norm(h + attended)
        series = self.series_head(h[:, -1])
        parts = [series, self.static_encoder(static)]
        if self.input_summary:  # x is scaled to [0, 1]: no squashing needed
            parts.append(hourly_summary(x, self.input_summary))
        return self.classifier(torch.cat(parts, dim=-1))
