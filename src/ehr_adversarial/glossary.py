"""One line for each name a report shows (models, feature sets, generators), so a report explains itself."""

from __future__ import annotations

from collections.abc import Iterable

NAMES: dict[str, str] = {
    # models
    "lstm_sun2018": "the mortality LSTM of Sun et al. (KDD 2018) over the 48 hourly values, read out at its "
                    "final hidden state; the architecture the paper attacks",
    "lstm_pooled": "the LSTM of lstm_sun2018 with the static descriptors, a read-out over all hours (last "
                   "state, mean and max of the outputs) and each feature's mean, min, max and last hourly value; it "
                   "reads the same hourly values, so the attack perturbs all of its time-series input",
    "dssm": "the bi-LSTM with self-attention of ehr_classification (values, measurement masks and hours since "
            "the last measurement, plus a static encoder)",
    "logreg": "logistic regression on per-record summaries of each variable (mean, min, max, first, last, std, "
              "first/last-24-hour and last-6-hour statistics, measured hours, hours since the last "
              "measurement) and the static descriptors",
    "gbm": "scikit-learn's histogram gradient boosting (HistGradientBoostingClassifier) on the same per-record "
           "summaries as logreg",
    "gbm_sun2018": "the gbm recipe on per-record summaries of the sun2018 feature set: what the inputs of "
                   "lstm_sun2018 allow, its yardstick",
    "stack": "the strongest torch model and tree model combined (dssm and gbm on PhysioNet 2012): the mean of their "
             "logits, Platt-scaled on their held-out predictions of the validation split; a prediction model only "
             "(the attack needs one torch model)",
    # feature sets
    "full": "every time-series variable of the source (36 for PhysioNet 2012), 48 hourly bins, with masks, "
            "hours since the last measurement and the static descriptors",
    "sun2018": "the 19 laboratory and vital-sign variables of Sun et al. (2018), as far as the source records them "
               "(18 in PhysioNet 2012, 19 in MIMIC-III), 48 hourly bins",
    # generators
    "ehrdiff": "EHRDiff (Yuan et al., 2023): score-based diffusion (EDM) over one flat vector per record",
    "synehrgy": "SynEHRgy (Karami et al., 2024): a GPT over tokenised records (variable, value bin, time gap)",
    "kmimic": "K-MIMIC style: a static VAE and a temporal VAE, and a mortality-conditioned WGAN-GP in their "
              "joint latent space",
}


def glossary(names: Iterable[str]) -> list[str]:
    """Markdown bullet lines `- **name**: meaning` for those of `names` the glossary knows, in order."""
    seen = dict.fromkeys(names)
    return [f"- **{name}**: {NAMES[name]}" for name in seen if name in NAMES]
