"""Importing this module is observable: the factory-check tests prove a refused factory is never imported."""

IMPORTED = True


class Anything:
    def __init__(self, **config: object) -> None:
        self.config = config
