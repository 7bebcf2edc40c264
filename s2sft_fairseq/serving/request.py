"""``POST /generate``: the request body, read, parsed and checked, every problem a 4xx naming where.

Order of the checks, each with its own status (README, "HTTP server"):

* a body over ``--max-body-bytes`` -> 413, refused while it streams in (never buffered whole);
* a body that is not UTF-8 -> 400 naming the byte offset; not JSON -> 400 naming line and column;
* a JSON value that is not an object, a missing ``inputs``, a field of the wrong type (no
  coercion: ``"5"`` is not a beam), an unknown field, a value out of range -> 422 naming the field
  (``inputs[3]``, ``beam``);
* limits of this server and this model (``--max-inputs``, ``--max-input-chars``, ``--max-beam``,
  the model's target positions) -> 422 naming the field and the limit;
* a text with nothing left after the API's cleaning (:func:`s2sft_fairseq.text.clean_text`) -> 422
  naming its index (the Python API decodes nothing for it and flags it ``empty``; a client of the
  server is told instead).

Texts longer than the model's source positions are truncated, as by the API, and their output
says ``truncated``.
"""
import json
from typing import Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .limits import ServeLimits


class RequestProblem(Exception):
    """A request the server refuses: HTTP ``status`` and a message saying what and where."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class GenerateRequest(BaseModel):
    """The JSON body of ``POST /generate``; the decoding fields are fairseq-generate's flags
    (``max_len`` is ``--max-len-b`` with ``--max-len-a 0``; scores as in the Python API)."""
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    inputs: List[str] = Field(min_length=1, description="the texts to decode")
    beam: int = Field(5, ge=1)
    nbest: int = Field(1, ge=1)
    max_len: Optional[int] = Field(None, ge=1, description="the most output tokens (default: the model's target "
                                                             "positions, which also cap it)")
    min_len: int = Field(1, ge=1)
    lenpen: float = 1.0
    no_repeat_ngram_size: int = Field(0, ge=0)
    sampling: bool = False
    sampling_topk: int = Field(-1, ge=-1)
    sampling_topp: float = Field(-1.0, ge=-1.0, le=1.0)
    temperature: float = Field(1.0, ge=0.01, le=100.0)
    seed: Optional[int] = Field(None, ge=0, le=2**32 - 1,
                                description="reseed before decoding (then never batched with others)")

    def generation_options(self) -> Dict:
        """The options of ``S2SFT.generate`` for this request (without the inputs)."""
        opts = self.model_dump(exclude={"inputs", "max_len"})
        opts.update(max_len_a=0, max_len_b=self.max_len)
        return opts

    def with_model_defaults(self, max_target_positions: int) -> "GenerateRequest":
        return self if self.max_len is not None else self.model_copy(update={"max_len": max_target_positions})

    def batching_key(self) -> tuple:
        """Requests with equal keys may share a batch: the same decoding settings, and no seed
        (a seeded request must give what it gives alone)."""
        opts = self.generation_options()
        if opts["seed"] is not None:
            return ("seeded", id(self))
        return tuple(sorted(opts.items()))


async def read_body(stream, declared_length: Optional[str], limit: int) -> bytes:
    """The body from the ASGI ``stream``, refused (413) as soon as it exceeds ``limit`` bytes."""
    too_large = RequestProblem(413, f"request body larger than {limit} bytes (--max-body-bytes)")
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def parse(body: bytes) -> GenerateRequest:
    """Bytes -> a valid :class:`GenerateRequest` (types and ranges; limits are :func:`check_limits`)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestProblem(400, f"request body is not valid UTF-8: byte {e.start} ({e.reason})") from None
    if not text.strip():
        raise RequestProblem(400, "empty request body: expected a JSON object such as {\"inputs\": [\"a text\"]}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise RequestProblem(400, f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise RequestProblem(400, "malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise RequestProblem(422, f"the body is a JSON {type(data).__name__}, expected an object such as "
                                  "{\"inputs\": [\"a text\"]}")
    try:
        return GenerateRequest.model_validate(data)
    except ValidationError as e:
        raise RequestProblem(422, "; ".join(_describe(err) for err in e.errors())) from None


def _describe(err: Dict) -> str:
    where = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p))
                    for i, p in enumerate(err["loc"])) or "body"
    if err["type"] == "extra_forbidden":
        known = ", ".join(GenerateRequest.model_fields)
        return f"{where}: unknown field (the fields are {known})"
    if err["type"] == "missing":
        return f"{where}: missing"
    return f"{where}: {err['msg']} (got {json.dumps(err.get('input'))[:60]})"


def check_limits(req: GenerateRequest, limits: ServeLimits, max_target_positions: int, vocab_size: int) -> None:
    """This server's and this model's limits (422 naming the field)."""
    problems = []
    if req.sampling_topk > vocab_size:
        problems.append(f"sampling_topk: {req.sampling_topk}, more than the model's {vocab_size} output tokens")
    if len(req.inputs) > limits.max_inputs:
        problems.append(f"inputs: {len(req.inputs)} texts, at most {limits.max_inputs} per request (--max-inputs)")
    for i, text in enumerate(req.inputs):
        if len(text) > limits.max_input_chars:
            problems.append(f"inputs[{i}]: {len(text)} characters, at most {limits.max_input_chars} "
                            "(--max-input-chars)")
    if req.beam > limits.max_beam:
        problems.append(f"beam: {req.beam}, at most {limits.max_beam} (--max-beam)")
    if req.nbest > req.beam:
        problems.append(f"nbest: {req.nbest} > beam {req.beam} (the beam holds the n-best list; with sampling, beam "
                        "is the number of samples)")
    if req.max_len is not None and req.max_len > max_target_positions:
        problems.append(f"max_len: {req.max_len}, at most the model's {max_target_positions} target positions")
    if req.max_len is not None and req.min_len > req.max_len:
        problems.append(f"min_len: {req.min_len} > max_len {req.max_len}")
    if problems:
        raise RequestProblem(422, "; ".join(problems))


def check_not_empty(token_counts: List[int]) -> None:
    empty = [i for i, n in enumerate(token_counts) if n == 0]
    if empty:
        which = ", ".join(f"inputs[{i}]" for i in empty[:10]) + (" ..." if len(empty) > 10 else "")
        raise RequestProblem(422, f"{which}: empty after cleaning (only white space or control characters)")
