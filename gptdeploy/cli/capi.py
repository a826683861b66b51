"""PLACEHOLDER (helper-6 replaces this file): `gptdeploy capi ...`."""

import click


@click.group("capi")
def capi_group() -> None:
    """Build the C API."""
