"""Vast's PyWorker (``vastai`` 1.9.1, in its own venv) and the fake autoscaler it reports to.

PyWorker is configured by ``bench/pyworker_worker.py``; with ``secured`` it verifies a real RSA
signature on every request, made here with a key whose public half the fake autoscaler serves.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

from bench.agent_stream.constants import HOST, MODEL, REPO
from bench.agent_stream.routes import PyWorkerRoute
from bench.procs import Proc, spawn
from shared.tools.devstack import free_port

__all__ = ["VASTAI_PYTHON", "start_pyworker"]

VASTAI_PYTHON = REPO / ".venv" / "vastai" / "bin" / "python"
PYWORKER_READY_LINE = "Healthcheck confirmed - marking model as loaded"


def _rsa_key_and_signature(url: str) -> tuple[bytes, str]:
    """A real RSA key for PyWorker's /pubkey/, and the signature it verifies when secured."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    message = json.dumps({"url": url}, indent=4, sort_keys=True).encode()  # what PyWorker verifies
    return pem, base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def _wait_for_line(proc: Proc, line: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while line not in proc.log_text():
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} never logged {line!r}; log:\n{proc.log_text()[-3000:]}")
        time.sleep(0.1)


def start_pyworker(work: Path, ollama_port: int, ollama_log: Path, secured: bool, procs: list[Proc]) -> PyWorkerRoute:
    if not VASTAI_PYTHON.exists():
        raise RuntimeError(f"{VASTAI_PYTHON} is missing: `make` sets up the vastai venv (pip install vastai==1.9.1)")
    port, http_port, scaler_port = free_port(), free_port(), free_port()
    pem, signature = _rsa_key_and_signature(f"http://{HOST}:{port}")
    (work / "autoscaler.pub.pem").write_bytes(pem)
    scaler = spawn(
        "fake-autoscaler",
        [
            sys.executable,
            "-m",
            "bench.fake_autoscaler",
            "--port",
            str(scaler_port),
            "--pubkey-file",
            str(work / "autoscaler.pub.pem"),
        ],
        work / "logs" / "fake-autoscaler.log",
        cwd=REPO,
    )
    procs.append(scaler)
    scaler.wait_http(f"http://{HOST}:{scaler_port}/__state")
    (work / "pyworker").mkdir(exist_ok=True)  # PyWorker writes .has_benchmark into its working folder
    env = {
        "WORKER_PORT": str(port),
        "WORKER_HTTP_PORT": str(http_port),
        "REPORT_ADDR": f"http://{HOST}:{scaler_port}",
        "UNSECURED": "false" if secured else "true",
        "MASTER_TOKEN": "bench",
        "CONTAINER_ID": "1",
        "PUBLIC_IPADDR": HOST,
        f"VAST_TCP_PORT_{port}": str(port),
        "USE_SSL": "false",
        "BENCH_MODEL_PORT": str(ollama_port),
        "BENCH_MODEL_LOG": str(ollama_log),
        "BENCH_MODEL": MODEL,
    }
    worker = spawn(
        "pyworker",
        [str(VASTAI_PYTHON), str(REPO / "bench" / "pyworker_worker.py")],
        work / "logs" / "pyworker.log",
        env=env,
        cwd=work / "pyworker",
    )
    procs.append(worker)
    _wait_for_line(worker, PYWORKER_READY_LINE, 60.0)
    return PyWorkerRoute(port, worker, signature, f"http://{HOST}:{scaler_port}")
