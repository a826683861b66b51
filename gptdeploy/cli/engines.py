"""PLACEHOLDER (helper-7 replaces this file): `gptdeploy build-engine` and `gptdeploy check`."""

import click


@click.command("build-engine")
def build_engine_command() -> None:
    """Build a TensorRT engine."""
    raise click.ClickException("not built yet")


@click.command("check")
def check_command() -> None:
    """Pre-flight check."""
    raise click.ClickException("not built yet")
