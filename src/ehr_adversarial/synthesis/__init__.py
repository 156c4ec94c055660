"""Synthetic-EHR generators: EHRDiff (diffusion), SynEHRgy (GPT on tokenised records) and K-MIMIC
(VAEs + conditional WGAN-GP). The torch modules live in ehr_adversarial.models; this package holds
the tokenizer and the training and sampling loops; the Kedro nodes are in
ehr_adversarial.pipelines.synthesis."""
