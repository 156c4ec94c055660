"""Writes synthcity_reference.json: a small seeded fixture and synthcity's metric values on it.

Run with a Python environment that has synthcity (not the project's: synthcity 0.2.12 needs
torch < 2.3 and numpy < 2, the project has newer ones; and opacus < 1.5.4, which synthcity's
package metadata does not pin but its import needs under torch 2.2), e.g.

    python3 -m venv /tmp/synthcity-venv
    /tmp/synthcity-venv/bin/pip install synthcity==0.2.12 "opacus<1.5.4"
    /tmp/synthcity-venv/bin/python tests/data/synthcity_reference.py

tests/test_fidelity.py and tests/test_privacy.py rebuild the fixture with `fixture()` below (numpy's
PCG64 streams are stable across numpy versions) and compare the project's metrics with these values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SEED = 20220717
N, D = 300, 6


def fixture() -> dict[str, np.ndarray]:
    """real / synthetic (300 × 6): correlated Gaussians, the synthetic ones with a shifted mean, a
    wider spread and 30 near-copies of real records; members / non-members / reference (150 × 3)
    and synthetic_3d (300 × 3) for DOMIAS, where 100 synthetic records copy members closely."""
    rng = np.random.default_rng(SEED)
    mixing = rng.normal(size=(D, D)) / np.sqrt(D)
    real = rng.normal(size=(N, D)) @ mixing
    synthetic = 1.3 * rng.normal(size=(N, D)) @ mixing + 0.3
    synthetic[:30] = real[:30] + 0.01 * rng.normal(size=(30, D))
    members, non_members, reference = (rng.normal(size=(150, 3)) for _ in range(3))
    synthetic_3d = rng.normal(size=(300, 3))
    synthetic_3d[:100] = members[:100] + 0.05 * rng.normal(size=(100, 3))
    return {"real": real, "synthetic": synthetic, "members": members, "non_members": non_members,
            "reference": reference, "synthetic_3d": synthetic_3d}


def main() -> None:
    from importlib.metadata import version

    import pandas as pd
    from synthcity.metrics.eval_privacy import DomiasMIAKDE, IdentifiabilityScore
    from synthcity.metrics.eval_statistical import AlphaPrecision, PRDCScore
    from synthcity.plugins.core.dataloader import GenericDataLoader

    data = fixture()
    real, synthetic = data["real"], data["synthetic"]
    prdc = PRDCScore(nearest_k=5)._compute_prdc(real, synthetic)
    _, precision_curve, recall_curve, delta_precision, delta_recall, authenticity = AlphaPrecision().metrics(
        real, synthetic, emb_center=None
    )
    identifiability = IdentifiabilityScore()._compute_scores(
        GenericDataLoader(pd.DataFrame(real.copy())), GenericDataLoader(pd.DataFrame(synthetic.copy()))
    )
    # DomiasMIA._evaluate takes non-members = X_gt[:reference_size], reference = X_gt[-reference_size:]
    domias = DomiasMIAKDE()._evaluate(
        GenericDataLoader(pd.DataFrame(np.concatenate([data["non_members"], data["reference"]]))),
        pd.DataFrame(data["synthetic_3d"]),
        GenericDataLoader(pd.DataFrame(data["members"])),
        pd.DataFrame(data["synthetic_3d"]),
        reference_size=150,
    )
    result = {
        "note": (
            f"Produced by tests/data/synthcity_reference.py with synthcity {version('synthcity')} "
            f"(torch {version('torch')}, numpy {np.__version__}, scikit-learn {version('scikit-learn')}, "
            f"scipy {version('scipy')}, opacus {version('opacus')}); fixture(): seed {SEED}."
        ),
        "prdc": {
            "function": "synthcity.metrics.eval_statistical.PRDCScore(nearest_k=5)._compute_prdc(real, synthetic)",
            **{k: float(v) for k, v in prdc.items()},
        },
        "alpha_precision": {
            "function": "synthcity.metrics.eval_statistical.AlphaPrecision().metrics(real, synthetic, emb_center=None)",
            "delta_precision_alpha": float(delta_precision),
            "delta_coverage_beta": float(delta_recall),
            "authenticity": float(authenticity),
            "precision_curve": [float(v) for v in precision_curve],
            "recall_curve": [float(v) for v in recall_curve],
        },
        "identifiability": {
            "function": "synthcity.metrics.eval_privacy.IdentifiabilityScore()._compute_scores(real, synthetic)",
            "score": float(identifiability["score"]),
        },
        "domias_kde": {
            "function": ("synthcity.metrics.eval_privacy.DomiasMIAKDE()._evaluate(non_members + reference, "
                         "synthetic_3d, members, synthetic_3d, reference_size=150)"),
            "aucroc": float(domias["aucroc"]),
        },
    }
    Path(__file__).with_name("synthcity_reference.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
