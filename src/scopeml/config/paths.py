"""Where scopeml's own configs live, and how every command composes them.

The configs ship inside the package (`scopeml/conf`), so a wheel install finds them through
Hydra's `pkg://` search path; a source checkout keeps a `conf` link at its root for people
who edit them there. A user's own config folder is added with Hydra's `--config-dir` (the
commands) or `config_dir=` (the compose helper below): it adds options beside the shipped ones.
"""

from __future__ import annotations

import warnings
from pathlib import Path

CONF_MODULE = "scopeml.conf"
CONF_SEARCH_PATH = f"pkg://{CONF_MODULE}"


def register_defaults() -> None:
    """Give Hydra the schema's defaults as `scopeml_defaults` (conf/config.yaml composes it first)."""
    from hydra.core.config_store import ConfigStore

    from scopeml.config.schema import defaults_node, variant_defaults

    store = ConfigStore.instance()
    store.store(name="scopeml_defaults", node=defaults_node())
    for name, node in variant_defaults().items():  # a data recipe's own fields: its file composes /schema/data_<recipe>
        store.store(group="schema", name=name, node=node)


register_defaults()  # every command and every compose() imports this module before composing

# conf/hydra/launcher/ray.yaml sets scopeml's launcher over the Ray plugin's structured config of the same name, which
# Hydra 1.3 merges into it as its schema (what we want: the plugin's types check ours), warning on every composition.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/ray' is validated against ConfigStore schema")


def conf_dir() -> Path:
    """The shipped config folder on disk (a real folder in both editable and wheel installs)."""
    return Path(__file__).resolve().parent.parent / "conf"


def compose(config_name: str = "config", overrides: list[str] | tuple = (), config_dir: str | Path | None = None):
    """Compose a primary config the way the commands do, with an optional user config folder beside the shipped one."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    # As Hydra's --config-dir does for the commands, the user's folder joins the search path after
    # scopeml's own configs: a user's file adds options (model=tiny); it does not replace a shipped one.
    extra = [f"hydra.searchpath=[file://{Path(config_dir).expanduser().resolve()}]"] if config_dir else []
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=[*extra, *overrides])
