"""The server's limits: what one request may ask and how batches are formed (``s2sft-serve --help``)."""
from dataclasses import dataclass


@dataclass(frozen=True)
class ServeLimits:
    max_body_bytes: int = 1 << 20      # a larger request body is refused (413) before it is parsed
    max_inputs: int = 32               # texts per request
    max_input_chars: int = 4000        # characters per text (longer texts are refused, 422)
    max_beam: int = 16                 # beam (and number of samples) per request
    max_queue: int = 256               # inputs waiting for a batch; beyond, 503 with Retry-After
    max_batch_size: int = 32           # inputs per batch
    max_batch_tokens: int = 4096       # source tokens per batch, padding included (inputs x longest)
    max_wait_ms: float = 50.0          # how long the oldest waiting input may wait for others to join
    request_timeout: float = 120.0     # seconds from arrival to answer; then 504 and the work is dropped

    def check(self, max_source_positions: int) -> None:
        """Refuse settings under which a valid request could never be served."""
        problems = []
        for name in ("max_body_bytes", "max_inputs", "max_input_chars", "max_beam", "max_queue",
                     "max_batch_size", "max_batch_tokens"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be >= 1")
        if self.max_inputs > self.max_queue:
            problems.append(f"--max-inputs {self.max_inputs} > --max-queue {self.max_queue}: a full-size request "
                            "could never be queued")
        if self.max_batch_tokens < max_source_positions:
            problems.append(f"--max-batch-tokens {self.max_batch_tokens} < the model's {max_source_positions} source "
                            "positions: one long input would not fit a batch")
        if self.max_wait_ms < 0 or self.request_timeout <= 0:
            problems.append("--max-wait-ms must be >= 0 and --request-timeout > 0")
        if problems:
            raise ValueError("; ".join(problems))
