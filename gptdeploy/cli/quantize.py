"""PLACEHOLDER (helper-5 replaces this file): `gptdeploy quantize`."""

import click


@click.command("quantize")
def quantize_command() -> None:
    """Quantize a bundle's graph."""
    raise click.ClickException("not built yet")
