"""Start `transformers serve` with the default model on 127.0.0.1, for the endpoint tests and benchmark: started,
killed with SIGKILL and restarted on the same port."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pricer.errors import ModelError

SERVED_ID = "smollm2-135m-instruct"  # the name the server is started with: a link to the converted model folder
START_TIMEOUT = 180.0  # seconds to load the model and answer /health; ~20 s on a 2-core CPU at load 7
SERVING_MODULES = ("fastapi", "uvicorn")  # what `transformers serve` needs beyond transformers


def missing_serving_module() -> str | None:
    """The first module `transformers serve` needs that is not installed, or None."""
    return next((m for m in SERVING_MODULES if importlib.util.find_spec(m) is None), None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServedModel:
    """The default model served at 32 bits (float32) from `folder`, which gets a link named SERVED_ID: the served id
    is the name given, the same on every machine."""

    def __init__(self, folder: Path, *, port: int | None = None) -> None:
        from pricer.engines.transformers.default_model import converted_folder, default_gguf

        self.folder, self.port = Path(folder), port or free_port()
        self.log = self.folder / "serve.log"
        link = self.folder / SERVED_ID
        if not link.exists():
            link.symlink_to(converted_folder(default_gguf()))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        """Start and wait for /health; ModelError naming the log if it exits or does not answer in time."""
        import requests

        command = [str(Path(sys.executable).parent / "transformers"), "serve", "--host", "127.0.0.1", "--port",
                   str(self.port), "--dtype", "float32", SERVED_ID]  # float32: the 32-bit width's dtype
        # One thread: on a shared 2-core machine OpenMP's spinning threads made a request take 14-25 s, not 1-2 s.
        env = os.environ | {"OMP_NUM_THREADS": "1"}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT)
        end = time.monotonic() + START_TIMEOUT
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise ModelError(f"transformers serve exited with {self.process.returncode}; see {self.log}")
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/health", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.kill()
        raise ModelError(f"transformers serve did not answer /health in {START_TIMEOUT:g} s; see {self.log}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)
