"""`gptdeploy serve`: the OpenAI-compatible HTTP server on the engine, and its Ray Serve deployment.

An optional extra (`pip install 'gptdeploy[serve]'`, `[ray]` for Ray Serve): nothing outside this package imports
it, so the core install never needs FastAPI. The layers, each its own module:
  service.py   the model behind the server: loading, the EngineLoop, queue limits, following requests (no HTTP);
  protocol.py  the OpenAI wire format: request bodies in, response bodies and stream chunks out;
  metrics.py   Prometheus metrics;
  app.py       the FastAPI app over a service: routes, errors, API key, body limit;
  runner.py    uvicorn with a draining shutdown on SIGTERM;
  ray_app.py   the same app as N Ray Serve replicas.
"""
