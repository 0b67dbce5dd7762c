"""scopeml: a config-driven ML lifecycle (scoping, data, modeling, deployment, monitoring)."""

__version__ = "0.1.0"
