"""The mortality LSTM of Sun et al. (2018), run over time.

x is (batch, 48 hours, features): the LSTM reads the 48 hourly steps, its final
hidden state goes through tanh and dropout, then FC 32 + ReLU, then 2 logits.
The paper's code used a unidirectional LSTM(128); an earlier reproduction a
bidirectional one, so `bidirectional` is a parameter. forward() returns logits;
train it with cross-entropy on the logits (no softmax inside the model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LSTMSun2018(nn.Module):
    # inputs forward() reads from a tensor bundle, in order
    inputs = ("x",)

    def __init__(
        self,
        n_features: int,
        hidden_size: int = 128,
        bidirectional: bool = False,
        dropout: float = 0.5,
        fc_size: int = 32,
        n_classes: int = 2,
    ):
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden_size, batch_first=True, bidirectional=bidirectional)
        n_directions = 2 if bidirectional else 1
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(n_directions * hidden_size, fc_size)
        self.head = nn.Linear(fc_size, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # h_n: (directions, B, H). The forward direction ends at hour 47, the backward
        # one at hour 0; each has read the whole sequence.
        _, (h_n, _) = self.lstm(x)
        h = torch.cat(tuple(h_n), dim=-1)
        h = self.dropout(torch.tanh(h))
        return self.head(F.relu(self.fc(h)))
