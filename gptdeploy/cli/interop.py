"""PLACEHOLDER (helper-8 replaces this file): `gptdeploy import-hf` / `export-hf`."""

import click


@click.command("import-hf")
def import_hf_command() -> None:
    """Import a Hugging Face folder."""
    raise click.ClickException("not built yet")


@click.command("export-hf")
def export_hf_command() -> None:
    """Export to a Hugging Face folder."""
    raise click.ClickException("not built yet")
