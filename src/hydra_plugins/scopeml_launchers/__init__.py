"""scopeml's Hydra launchers (see scopeml.launchers)."""
