"""Fidelity, utility and privacy metrics for synthetic EHR (plain numpy / scikit-learn / torch).

flat_view turns a tensor bundle into one row per record; fidelity, utility and privacy
compare such tables (and the tensors) between real and synthetic data. The Kedro
pipeline `ehr_adversarial.pipelines.synthetic_evaluation` applies them to every
generator's output.
"""
