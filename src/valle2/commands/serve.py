"""``valle2 serve``: the HTTP API (OpenAI-compatible speech endpoint, voices, web page)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from valle2.errors import MissingDependencyError

logger = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="run the HTTP API and web page",
        description="Serve POST /v1/audio/speech (OpenAI-compatible), a voice library, /metrics and a web page at /. "
                    "API keys come from --config (api_keys) and the env var VALLE2_API_KEYS (comma-separated).",
    )
    p.add_argument("--config", type=Path, default=None, help="YAML/JSON file of server settings (ServeConfig fields)")
    p.add_argument("--model", default=None, help="'default' (bundled), 'debug' (tiny random model) or a model folder")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--max-batch", type=int, default=None, help="most sentences in one batched decode (default 16)")
    p.add_argument("--max-wait-ms", type=float, default=None, help="how long a sentence waits for others to batch with")
    p.add_argument("--queue-size", type=int, default=None, help="requests admitted at once; more get 429")
    p.add_argument("--request-timeout", type=float, default=None, dest="request_timeout_s", help="seconds per request")
    p.add_argument("--max-input-chars", type=int, default=None, help="longest input text (default 4096)")
    p.add_argument("--max-upload-bytes", type=int, default=None, help="largest voice upload request")
    p.add_argument("--data-dir", type=Path, default=None, help="voice library folder (default $VALLE2_HOME/server)")
    p.add_argument("--threads", type=int, default=None, dest="torch_threads", help="torch CPU threads")
    p.add_argument("--no-auth", action="store_const", const=True, default=None, dest="auth_disabled",
                   help="run without API keys (for local use only)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from valle2.serve.config import ServeConfig

    overrides = {k: getattr(args, k) for k in (
        "model", "device", "host", "port", "max_batch", "max_wait_ms", "queue_size", "request_timeout_s",
        "max_input_chars", "max_upload_bytes", "data_dir", "torch_threads", "auth_disabled")}
    return ServeConfig.load(args.config, **overrides)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from valle2.serve.app import create_app
    except ImportError as e:
        raise MissingDependencyError(f"valle2 serve needs the 'serve' extra ({e.name} is missing): "
                                     "pip install 'valle2[serve]'") from None

    config = config_from_args(args)
    config.check_auth()
    if config.auth_disabled:
        logger.warning("authentication is OFF (--no-auth): anyone who can reach %s:%d can use the API",
                       config.host, config.port)
    if config.torch_threads:
        import torch

        torch.set_num_threads(config.torch_threads)
    app = create_app(config)
    if app.state.valle2.model.name == "debug":
        print("note: serving the tiny RANDOM 'debug' model: its output is noise, not speech", file=sys.stderr)
    uvicorn.run(app, host=config.host, port=config.port, log_level=args.log_level, timeout_graceful_shutdown=10)
    return 0
