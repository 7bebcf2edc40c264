"""``s2sft-serve CHECKPOINT``: serve a fine-tuned checkpoint over HTTP (README, "HTTP server").

    s2sft-serve SAVE_DIR/checkpoint_best.pt [--data DATA] [--host 127.0.0.1 --port 8080]
                [--decode-precision fp32|bf16|int8] [limits: s2sft-serve --help]

The model is loaded once with the Python API (``S2SFT.from_pretrained``: the save directory's own
dictionary and tokenizer, or ``--data``). uvicorn serves the app of :mod:`.app`; on SIGTERM or
Ctrl-C it stops accepting connections, lets the requests in flight finish (at most
``--drain-timeout`` seconds), then exits by the signal it got (uvicorn re-raises it, so that
a supervisor sees why the server stopped).
"""
import argparse
import logging
import os
import sys
from dataclasses import fields

from ..errors import S2SFTError
from .limits import ServeLimits

PROG = "s2sft-serve"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
_LIMIT_HELP = {
    "max_body_bytes": "larger request bodies are refused (413)",
    "max_inputs": "texts per request",
    "max_input_chars": "characters per text",
    "max_beam": "beam (or samples) per request",
    "max_queue": "inputs waiting for a batch; a request that does not fit gets 503 with Retry-After",
    "max_batch_size": "inputs decoded together",
    "max_batch_tokens": "source tokens per batch (inputs x longest, padding included)",
    "max_wait_ms": "how long the oldest waiting input waits for others with the same settings",
    "request_timeout": "seconds from arrival to answer; then 504 and the request's waiting work is dropped",
}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", help="a fairseq checkpoint of this plugin (SAVE_DIR/checkpoint_*.pt)")
    p.add_argument("--data", default=None,
                   help="data directory with the dictionary and tokenizer (default: the checkpoint's save directory)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (the default serves this machine only; there is no authentication)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--decode-precision", default="fp32", choices=("fp32", "bf16", "int8"),
                   help="as fairseq-generate's --decode-precision (README, 'Reduced precision on the CPU')")
    p.add_argument("--threads", type=int, default=0, help="torch threads for decoding (0: torch's default)")
    p.add_argument("--drain-timeout", type=float, default=60.0,
                   help="on SIGTERM, seconds to let requests in flight finish before exiting")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    limits = p.add_argument_group("limits")
    for f in fields(ServeLimits):
        limits.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                            help=_LIMIT_HELP[f.name])
    return p


def load(args):
    """The model and its checkpoint path, or an :class:`S2SFTError` saying what is missing."""
    from ..hub_interface import S2SFT
    path = os.path.abspath(args.checkpoint)
    if os.path.isdir(path):
        raise S2SFTError(f"{path} is a directory: give the checkpoint file (e.g. {path}/checkpoint_best.pt)")
    return S2SFT.from_pretrained(os.path.dirname(path), checkpoint_file=os.path.basename(path),
                                 data_name_or_path=args.data, decode_precision=args.decode_precision), path


def cli_main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
                        force=True)  # the imports above may have configured logging already
    if args.log_level != "debug":  # fairseq logs every batch iterator it builds, i.e. every batch here
        logging.getLogger("fairseq").setLevel(logging.WARNING)
    limits = ServeLimits(**{f.name: getattr(args, f.name) for f in fields(ServeLimits)})
    import torch
    import uvicorn

    import s2sft_fairseq  # noqa: F401  (registers the plugin)
    from .app import build_app
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        model, path = load(args)
        app = build_app(model, limits, checkpoint=path, decode_precision=args.decode_precision)
    except (S2SFTError, ValueError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    if args.host not in LOOPBACK:
        logging.getLogger(PROG).warning(f"binding to {args.host}: other machines can reach this server, which has "
                                        "no authentication")
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            timeout_graceful_shutdown=args.drain_timeout, access_log=args.log_level == "debug")
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
