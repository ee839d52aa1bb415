"""A handler whose initialize raises: the model FAILS with this reason."""


class InitFails:
    def initialize(self, context):
        raise RuntimeError("no weights here: initialize gave up")

    def handle(self, data, context):
        return [None for _ in data]
