"""A handler importing a package that is not installed: the model FAILS naming it."""

import fastserve_missing_package_xyz  # noqa: F401


def handle(data, context):
    return data
