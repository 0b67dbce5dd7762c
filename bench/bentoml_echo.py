"""The floor under any BentoML endpoint, for bench/bench_serving.py: the same multipart upload to
/classify, answered without decoding or scoring it.

    bentoml serve bench.bentoml_echo:Echo --port 3001      (ECHO_WORKERS=2 for two workers)

Its throughput is the most any BentoML handler can reach on the machine: HTTP, multipart
parsing into a temp file, validation, serialization, BentoML's middleware; no model work.
"""

from __future__ import annotations

import os
from pathlib import Path

import bentoml
from pydantic import BaseModel

from scopeml.serving.sockets import listen_per_worker


class Size(BaseModel):
    bytes: int


@bentoml.service(name="scopeml-echo", workers=int(os.environ.get("ECHO_WORKERS", "1")), traffic={"timeout": 60})
class Echo:
    @bentoml.api(route="/classify")
    async def classify(self, audio: Path) -> Size:
        return Size(bytes=Path(audio).stat().st_size)


# a listening socket per worker, as the service has (scopeml.serving.sockets)
listen_per_worker(Echo.name, int(Echo.config.get("workers") or 1))
