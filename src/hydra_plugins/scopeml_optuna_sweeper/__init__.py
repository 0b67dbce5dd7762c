"""scopeml's Optuna sweeper for Hydra (`hydra/sweeper=scopeml_optuna`; the preset `hparams_search=optuna` selects it).

The work is in scopeml.hpo; this package only registers the plugin class and its configs, which Hydra can find
only under the `hydra_plugins` namespace package.
"""
