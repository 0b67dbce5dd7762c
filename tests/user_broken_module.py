"""A user's module whose own import fails (a dependency that is not installed)."""

import not_installed_dependency  # noqa: F401


class Net:
    def __init__(self, n_classes: int):
        pass
