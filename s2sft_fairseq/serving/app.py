"""The HTTP routes of ``s2sft-serve`` (README, "HTTP server"): ``POST /generate``, ``GET /health``,
``GET /`` (the demo page), on FastAPI.

``POST /generate`` reads and checks the body (:mod:`.request`), counts each text's source tokens
(the API's cleaning and tokenizer, on the server's own tokenizer copy), queues the request
(:mod:`.batcher`; 503 with ``Retry-After`` when the queue is full) and waits for its results,
watching the connection: a client that disconnects, or a request older than
``--request-timeout`` (504), is withdrawn and its waiting work dropped. Every error is a JSON
``{"error": message}`` with its status; nothing a client sends stops the worker.
"""
import asyncio
import copy
import time
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..errors import S2SFTError
from .batcher import DynamicBatcher, QueueFull
from .limits import ServeLimits
from .request import GenerateRequest, RequestProblem, check_limits, check_not_empty, parse, read_body

def build_app(model, limits: ServeLimits, checkpoint: str = "", decode_precision: str = "fp32") -> FastAPI:
    """The app around one loaded :class:`~s2sft_fairseq.hub_interface.S2SFT`."""
    max_source, max_target = model.max_positions
    limits.check(max_source)
    counting_bpe = copy.deepcopy(model.bpe)  # the event loop's own: the worker thread uses model.bpe
    state = {}

    @asynccontextmanager
    async def lifespan(app):
        state["batcher"] = DynamicBatcher(model, limits)
        state["batcher"].start()
        yield
        await state["batcher"].stop()

    app = FastAPI(title="s2sft-serve", lifespan=lifespan, docs_url="/docs", redoc_url=None,
                  description="s2s-ft sequence-to-sequence generation (README, 'HTTP server')")

    @app.exception_handler(RequestProblem)
    async def problem(_request, exc: RequestProblem):
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.get("/health")
    async def health():
        batcher = state["batcher"]
        return {"status": "ok", "checkpoint": checkpoint, "decode_precision": decode_precision,
                "max_source_positions": max_source, "max_target_positions": max_target,
                "waiting_inputs": batcher.waiting_inputs, "running_inputs": batcher.running_inputs,
                **vars(batcher.stats)}

    @app.get("/", response_class=HTMLResponse)
    async def demo():
        return resources.files(__package__).joinpath("demo.html").read_text(encoding="utf-8")

    @app.post("/generate", openapi_extra={"requestBody": {"required": True, "content": {
              "application/json": {"schema": GenerateRequest.model_json_schema()}}}})
    async def generate(request: Request):
        arrived = time.monotonic()
        body = await read_body(request.stream(), request.headers.get("content-length"), limits.max_body_bytes)
        req = parse(body)
        check_limits(req, limits, max_target, len(model.task.target_dictionary))
        req = req.with_model_defaults(max_target)
        counts = [len(model.encode(text, bpe=counting_bpe)) - 1 for text in req.inputs]
        check_not_empty(counts)
        batcher = state["batcher"]
        try:
            job = batcher.submit(req.inputs, [min(n + 2, max_source) for n in counts], req.generation_options(),
                                 req.batching_key())
        except QueueFull as e:
            raise RequestProblem(503, str(e), {"Retry-After": str(e.retry_after)}) from None
        results = await _wait(job, request, batcher, arrived + limits.request_timeout)
        if results is None:  # the client is gone: nobody reads this
            return Response(status_code=499)
        return {"outputs": [_output(r) for r in results], "time_ms": round(1000 * (time.monotonic() - arrived), 1)}

    return app


async def _wait(job, request: Request, batcher, deadline: float):
    """The job's results; ``None`` if the client disconnected; 504 past the deadline. Nothing
    polls: the wait ends when the results come, the client goes or the deadline passes."""
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({job.future, gone}, timeout=max(0.0, deadline - time.monotonic()),
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if job.future in done:
        try:
            return job.future.result()
        except S2SFTError as e:
            raise RequestProblem(422, str(e)) from None
        except Exception as e:  # noqa: BLE001  (reported to the client, the server goes on)
            raise RequestProblem(500, f"decoding failed: {type(e).__name__}: {e}") from None
    batcher.withdraw(job)
    if gone in done:
        return None
    raise RequestProblem(504, "decoding did not finish within --request-timeout; the request was dropped")


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects: once the body is read, the server's next ASGI message
    for this request is ``http.disconnect`` (uvicorn sends it when the connection is lost)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _output(result) -> dict:
    return {"text": result.text, "truncated": result.truncated, "source_tokens": result.source_tokens,
            "hypotheses": [{"text": h.text, "score": h.score, "tokens": h.tokens} for h in result.hypotheses]}
