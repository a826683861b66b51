"""`python -m gptdeploy` runs the CLI."""

from gptdeploy.cli import main

main()
