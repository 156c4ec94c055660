"""Project settings (see https://docs.kedro.org/en/stable/configure/configuration_basics/)."""

import warnings

from ehr_adversarial.config import ProjectConfigLoader, env_or_default
from ehr_adversarial.hooks import EarlierRunsHook, LatestResultsHook, NodeProgressHook
from ehr_adversarial.session import StudySession

# OmegaConf warns on every command that `register_new_resolver()` will change; the project's resolver (`env`)
# is registered by Kedro's config loader, which the warning is about, not by the project.
warnings.filterwarnings("ignore", message=r".*register_new_resolver\(\) is deprecated.*")

HOOKS = (EarlierRunsHook(), NodeProgressHook(), LatestResultsHook())

# Plain pipeline names (`ingestion`, `__default__`) run on the environment's data source (globals.yml).
SESSION_CLASS = StudySession

CONFIG_LOADER_CLASS = ProjectConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"env": env_or_default},
    # An environment overrides single parameters (deep merge); catalog entries are replaced whole.
    "merge_strategy": {"parameters": "soft"},
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "catalog": ["catalog*", "catalog*/**", "**/catalog*"],
    },
}
