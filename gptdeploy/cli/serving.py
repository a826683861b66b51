"""`gptdeploy serve`: the OpenAI-compatible server, in this process or as Ray Serve replicas."""

from __future__ import annotations

from pathlib import Path

import click

from gptdeploy.cli.common import backend_options
from gptdeploy.engine import DEFAULT_PREFILL_CHUNK


@click.command("serve")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every one).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@backend_options
@click.option(
    "--max-queue",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Requests waiting for a slot before new ones get 429.",
)
@click.option(
    "--api-key",
    envvar="GPTDEPLOY_API_KEY",
    help="Require 'Authorization: Bearer KEY' on /v1 "
    "(or set GPTDEPLOY_API_KEY, which keeps it out of the process list).",
)
@click.option("--model-name", help="The model id clients send (default: the model folder's name).")
@click.option(
    "--prefill-chunk",
    type=click.IntRange(min=1),
    default=DEFAULT_PREFILL_CHUNK,
    show_default=True,
    help="Prompt tokens prefilled per engine step: smaller keeps time to first token and inter-token latency low "
    "behind long prompts, larger prefills long prompts faster.",
)
@click.option(
    "--grace-period",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds requests in flight get to finish after SIGTERM.",
)
@click.option(
    "--ray", "use_ray", is_flag=True, help="Serve with Ray Serve (on RAY_ADDRESS's cluster, else a local one)."
)
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --ray: copies of the model, each with its own engine.")  # fmt: skip
def serve_command(model, host, port, backend, device, precision, artifact, max_slots, max_queue, api_key, model_name,
                  prefill_chunk, grace_period, use_ray, replicas) -> None:  # fmt: skip
    """Serve a checkpoint or bundle over HTTP with OpenAI's API (/v1/completions, /v1/chat/completions).

    Example: gptdeploy serve runs/demo/finetune --port 8000
    """
    from gptdeploy.serve.options import ServeOptions, require_extra

    options = ServeOptions(str(model), backend, device, precision, artifact, max_slots, max_queue, api_key,
                           model_name or Path(model).resolve().name, prefill_chunk)  # fmt: skip
    if use_ray:
        require_extra("ray", "ray")
        from gptdeploy.serve.ray_app import run_on_ray

        run_on_ray(options, host, port, replicas)
        return
    if replicas != 1:
        raise click.UsageError("--replicas needs --ray (one process serves one replica)")
    require_extra("fastapi", "serve")
    require_extra("uvicorn", "serve")
    from gptdeploy.serve.runner import serve

    serve(options.service(), host, port, api_key, grace_period)
