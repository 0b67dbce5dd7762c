"""The whole lifecycle in one command, and the one report a person reads at the end."""
