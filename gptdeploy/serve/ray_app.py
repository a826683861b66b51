"""The same FastAPI app as N Ray Serve replicas, each with its own runtime and engine; Ray's HTTP proxy spreads the
requests over them and restarts a replica that dies (or whose engine fails its health check).

Two ways in: `gptdeploy serve MODEL --ray --replicas N` (`run_on_ray`), or Ray's own tooling with `build_app` as the
application, e.g. `serve run gptdeploy.serve.ray_app:build_app model=/models/demo replicas=2 num_gpus=1`, or the
same import path in a `serve deploy` config file (on a multi-node cluster or KubeRay's RayService).
"""

from __future__ import annotations

import logging
import os
import signal
import threading

import ray
from ray import serve

from gptdeploy.serve.app import create_app
from gptdeploy.serve.options import ServeOptions

logger = logging.getLogger(__name__)

APP_NAME = "gptdeploy"
LOCAL_OBJECT_STORE_BYTES = 100 * 1024 * 1024  # a local Ray for serving passes no large objects around


@serve.deployment(name="gptdeploy", max_ongoing_requests=256)
@serve.ingress()
class ModelReplica:
    """One replica: loads the model before Ray routes anything to it, then serves the app over it."""

    def __init__(self, options: ServeOptions):
        self.options = options
        self.service = options.service()
        self.service.start(wait=True)

    def __serve_build_asgi_app__(self):
        return create_app(self.service, self.options.api_key)

    def check_health(self) -> None:
        """Ray restarts a replica whose engine stopped after an error."""
        self.service.check_ready()


def deployment(options: ServeOptions, replicas: int = 1, num_cpus: float = 1.0, num_gpus: float = 0.0):
    """The bound application: `replicas` copies, each asking Ray for these CPUs and GPUs."""
    actor_options = {"num_cpus": num_cpus, "num_gpus": num_gpus}
    return ModelReplica.options(num_replicas=replicas, ray_actor_options=actor_options).bind(options)


def build_app(args: dict[str, str]):
    """The application builder for `serve run` / `serve deploy`: every `ServeOptions` field by name, plus replicas,
    num_cpus and num_gpus (per replica)."""
    args = dict(args)
    replicas, num_cpus, num_gpus = (int(args.pop("replicas", 1)), float(args.pop("num_cpus", 1)),
                                    float(args.pop("num_gpus", 0)))  # fmt: skip
    for name in ("max_slots", "max_queue", "prefill_chunk"):
        if name in args:
            args[name] = int(args[name])
    args.setdefault("model_name", os.path.basename(os.path.abspath(args["model"])))
    return deployment(ServeOptions(**args), replicas, num_cpus, num_gpus)


def run_on_ray(options: ServeOptions, host: str, port: int, replicas: int) -> None:
    """Deploy on the cluster RAY_ADDRESS names (else a local Ray started here) and serve until SIGTERM or Ctrl-C,
    then take the application down."""
    address = os.environ.get("RAY_ADDRESS")
    local = {"num_cpus": max(os.cpu_count() or 1, replicas), "object_store_memory": LOCAL_OBJECT_STORE_BYTES,
             "include_dashboard": False}  # fmt: skip
    ray.init(address=address, **({} if address else local))
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        serve.start(http_options={"host": host, "port": port})
        gpus = 1.0 if (options.device or "").startswith("cuda") or options.backend == "tensorrt" else 0.0
        serve.run(deployment(options, replicas, num_gpus=gpus), name=APP_NAME, route_prefix="/")
        logger.info("serving %s with %d Ray Serve replicas at http://%s:%d", options.model_name, replicas, host, port)
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        serve.shutdown()
        ray.shutdown()
