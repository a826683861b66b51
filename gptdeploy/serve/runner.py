"""Run the app under uvicorn in this process, draining on SIGTERM or Ctrl-C: the service takes no new requests
(503, and uvicorn stops accepting connections), those in flight finish within the grace period, then the process
exits 0 (uvicorn would re-raise the signal after its shutdown, ending the process by the signal instead)."""

from __future__ import annotations

import signal
from types import FrameType

import uvicorn

from gptdeploy.serve.app import create_app
from gptdeploy.serve.service import Service


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service):
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C stops waiting for requests in flight
        self.service.drain()
        self.should_exit = True


def serve(service: Service, host: str, port: int, api_key: str | None = None, grace_seconds: float = 30.0) -> None:
    """Serve until a signal; raises the loading error if the model could not be loaded."""
    app = create_app(service, api_key)
    config = uvicorn.Config(app, host=host, port=port, timeout_graceful_shutdown=grace_seconds, access_log=False,
                            log_level="info")  # fmt: skip
    server = DrainingServer(config, service)

    def stop(_: BaseException) -> None:
        server.should_exit = True

    service.on_load_failure = stop
    server.run()
    if service.load_error is not None:
        raise service.load_error
