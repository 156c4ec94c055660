"""Configuration loading: an `env` resolver for data roots and git-ignored local credentials.

Kedro reads `base` plus one run environment. Data-source environments such as
`mimic3_postgres` still need the secrets that a user keeps in the git-ignored
`conf/local/credentials.yml`, so the loader merges that file over the active
environment's credentials.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader


def env_or_default(name: str, default: Any = None) -> Any:
    """`${env:NAME,default}` in any config file: the environment variable or the default.

    Kedro clears OmegaConf's own `oc.env` after reading credentials, so data roots use
    this resolver under its own name.
    """
    value = os.environ.get(name)
    return default if value in (None, "") else value


class ProjectConfigLoader(OmegaConfigLoader):
    """OmegaConfigLoader that also merges `conf/local/credentials*` into any run env."""

    def __getitem__(self, key: str) -> dict[str, Any]:
        config = super().__getitem__(key)
        run_env = self.env or self.default_run_env
        local_dir = Path(self.conf_source) / "local"
        if key != "credentials" or run_env == "local" or not local_dir.is_dir():
            return config
        local = self.load_and_merge_dir_config(
            str(local_dir), self.config_patterns[key], key, set(), read_environment_variables=True
        )
        merged = dict(config)
        for name, values in local.items():
            if isinstance(values, dict) and isinstance(merged.get(name), dict):
                merged[name] = {**merged[name], **values}
            else:
                merged[name] = values
        return merged
