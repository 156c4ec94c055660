"""The mortality LSTM of Sun et al. (2018), run over time.

x is (batch, 48 hours, features): the LSTM reads the 48 hourly steps, its final
hidden state goes through tanh and dropout, then FC 32 + ReLU, then 2 logits.
The paper's code used a unidirectional LSTM(128); an earlier reproduction a
bidirectional one, so `bidirectional` is a parameter. forward() returns logits;
train it with cross-entropy on the logits (no softmax inside the model).

With its defaults the model is the paper's. The options `use_mask`, `use_delta`, `use_static` and
`readout: pooled` give it the measurement masks, the hours since the last measurement, the static
descriptors and a read-out over all hours; `model.inputs` then lists what forward() takes.
`input_summary` (e.g. `["mean", "last"]`) adds those summaries of each feature over the hours, taken from x
itself, beside the read-out: a wide path next to the deep one (the attack's gradient reaches x through both).
`measurement_summary` (`["measured_share", "hours_since_last"]`) adds, per feature, the share of hours it was
measured and the hours since its last measurement, read from the mask and delta (not from x, so the attack cannot
move them; they describe when the record was measured, which a value perturbation leaves as it was).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ehr_adversarial.models.hourly_summary import (
    MEASUREMENT_SUMMARIES,
    check_summaries,
    hourly_summary,
    summarise_measurements,
)

READOUTS = ("last", "pooled")


class LSTMSun2018(nn.Module):
    # inputs forward() reads from a tensor bundle, in order (x, then the optional channels)
    inputs = ("x",)

    def __init__(
        self,
        n_features: int,
        hidden_size: int = 128,
        bidirectional: bool = False,
        dropout: float = 0.5,
        fc_size: int = 32,
        n_classes: int = 2,
        n_static: int = 0,
        use_mask: bool = False,
        use_delta: bool = False,
        use_static: bool = False,
        readout: str = "last",
        input_summary: Sequence[str] = (),
        measurement_summary: Sequence[str] = (),
    ):
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout is {readout!r}; use one of {', '.join(READOUTS)}")
        # The paper's model reads x alone and its last hidden state; the options add what the data carries
        # besides the values: which cells were measured (mask), hours since the last measurement (delta),
        # the static descriptors, and a read-out over all hours (mean and max of the LSTM outputs).
        self.use_mask, self.use_delta, self.use_static, self.readout = use_mask, use_delta, use_static, readout
        self.input_summary = check_summaries(input_summary)
        self.measurement_summary = check_summaries(measurement_summary, MEASUREMENT_SUMMARIES, "measurement_summary")
        summarised = {MEASUREMENT_SUMMARIES[name][0] for name in self.measurement_summary}
        self.inputs = ("x", *(["mask"] if use_mask or "mask" in summarised else []),
                       *(["delta"] if use_delta or "delta" in summarised else []), *(["static"] if use_static else []))
        n_inputs = n_features * (1 + int(use_mask) + int(use_delta))
        self.lstm = nn.LSTM(n_inputs, hidden_size, batch_first=True, bidirectional=bidirectional)
        n_directions = 2 if bidirectional else 1
        n_summary = n_directions * hidden_size * (3 if readout == "pooled" else 1)
        n_summary += n_static if use_static else 0
        n_summary += (len(self.input_summary) + len(self.measurement_summary)) * n_features
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(n_summary, fc_size)
        self.head = nn.Linear(fc_size, n_classes)

    def forward(self, x: torch.Tensor, *channels: torch.Tensor, **named: torch.Tensor) -> torch.Tensor:
        # The optional channels come positionally in `self.inputs` order or by name (the attack passes names).
        extra = dict(zip(self.inputs[1:], channels, strict=False)) | named
        steps = [x]
        if self.use_mask:
            steps.append(extra["mask"].to(x.dtype))
        if self.use_delta:
            steps.append(extra["delta"])
        outputs, (h_n, _) = self.lstm(torch.cat(steps, dim=-1) if len(steps) > 1 else x)
        # h_n: (directions, B, H). The forward direction ends at hour 47, the backward
        # one at hour 0; each has read the whole sequence.
        h = torch.cat(tuple(h_n), dim=-1)
        if self.readout == "pooled":
            h = torch.cat([h, outputs.mean(dim=1), outputs.amax(dim=1)], dim=-1)
        h = torch.tanh(h)
        if self.input_summary:  # x is scaled to [0, 1]: no squashing needed
            h = torch.cat([h, hourly_summary(x, self.input_summary)], dim=-1)
        if self.measurement_summary:  # shares of hours in [0, 1] as well
            h = torch.cat([h, summarise_measurements(extra, self.measurement_summary).to(x.dtype)], dim=-1)
        if self.use_static:
            h = torch.cat([h, extra["static"]], dim=-1)
        h = self.dropout(h)
        return self.head(F.relu(self.fc(h)))
