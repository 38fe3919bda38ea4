"""``gpuq demo``: the whole story on localhost in well under a minute.

Jobs go in while the box is stopped; the box starts because work waits; the first job's tokens
stream live; signed callbacks arrive at a local receiver; a warm job follows; then the box stops
itself after its idle grace, and everything is shut down.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

from shared.boxes.providers.local import LocalProvider
from shared.models import InstanceState
from shared.settings import ClientSettings
from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack, DevStackConfig, free_port
from shared.tools.receiver import CallbackReceiver

__all__ = ["run_demo"]

MODEL = "llama3.2:1b"
PROMPTS = ["Why is the sky blue?", "Write a haiku about idle GPUs.", "Explain ski rental in one line."]


class _Narrator:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:5.1f}s] {text}", flush=True)


def _first_token_s(client: JobsClient, job_id: str, t_submit: float, narrator: _Narrator | None) -> float:
    """Follow the job's stream; print status changes (and tokens, with a narrator). Returns time to first token."""
    first: float | None = None
    for event in client.stream(job_id):
        if event.event == "status" and narrator and first is None:
            reason = (event.data["status_reason"] or "").replace("_", " ")
            narrator.say(f"{job_id}: {event.data['status']}{' · ' + reason if reason else ''}")
        elif event.event == "output":
            if first is None:
                first = time.monotonic() - t_submit
                if narrator:
                    narrator.say(f"streaming {job_id}:")
                    print("        ", end="")
            if narrator:
                print(event.data["text"], end="", flush=True)
        elif event.event == "done":
            if narrator:
                print(flush=True)
            break
    return first if first is not None else float("nan")


def run_demo(args: argparse.Namespace) -> int:
    narrator = _Narrator()
    print("gpuq demo: a job queue in front of a GPU box that starts when work waits and stops when idle.")
    print("Everything runs here: Cloud Tasks emulator, the four functions, a local 'GPU box' (agent process),")
    print("an Ollama stand-in, and a callback receiver.\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpuq-demo-") as tmp:
        client_settings = ClientSettings()
        real_ollama = client_settings.ollama_url or None
        if real_ollama:
            print(f"Using the real Ollama at {real_ollama} (OLLAMA_URL).\n", flush=True)
        config = DevStackConfig(
            port=free_port(),
            data_dir=Path(tmp),
            idle_grace_s=3.0,
            reaper_period_s=2.0,
            snooze_s=0.5,
            token_delay_s=0.03,
            load_delay_s=0.8,
            ollama_url=real_ollama,
            api_key=client_settings.api_keys or None,
            max_boxes=2,
            jobs_per_box=2,
        )
        with DevStack(config) as stack:
            receiver = CallbackReceiver(stack.settings.webhook_secret).start()
            client = JobsClient(stack.url, stack.api_key)
            provider = stack.provider()
            narrator.say(f"stack up: jobs API {stack.url}/v1/jobs; callbacks to {receiver.url}")
            narrator.say(f"box local-1 is {provider.get_sync('local-1').state.value}")
            count = max(1, args.jobs)
            _cold_jobs(client, receiver, narrator, count)
            _warm_job(client, narrator)
            _burst(client, narrator)
            if not _boxes_stop(provider, narrator, config.idle_grace_s):
                return 1
            client.close()
            receiver.stop()
            narrator.say("shutting everything down…")
    narrator.say("done: no process left running.")
    return 0


def _cold_jobs(client: JobsClient, receiver: CallbackReceiver, narrator: _Narrator, count: int) -> None:
    """Submit ``count`` jobs to the stopped box: one cold start, then every signed callback arrives."""
    prompts = [PROMPTS[i % len(PROMPTS)] + f" [{uuid.uuid4().hex[:4]}]" for i in range(count)]
    t_submit = time.monotonic()
    body = {"model": MODEL, "callback_url": receiver.url, "options": {"num_predict": 30}}
    jobs = [client.submit({**body, "prompt": p}) for p in prompts]
    narrator.say(f"submitted {count} jobs: {' '.join(j['id'] for j in jobs)}")
    cold = _first_token_s(client, jobs[0]["id"], t_submit, narrator)
    narrator.say(f"cold start: enqueue → first token {cold:.2f}s (box start + model load)")
    wanted = {j["id"] for j in jobs}
    receiver.wait_for(lambda evs: wanted <= {e.data["id"] for e in evs}, timeout=60)
    for event in receiver.events:
        if event.data["id"] in wanted:
            narrator.say(
                f"callback {event.type} for {event.data['id']}: signature verified, "
                f"{len(event.data['output'] or '')} chars of output"
            )


def _warm_job(client: JobsClient, narrator: _Narrator) -> None:
    t_warm = time.monotonic()
    warm_job = client.submit({"model": MODEL, "prompt": "One more, while the box is warm."})
    warm = _first_token_s(client, warm_job["id"], t_warm, None)
    warm_status = client.get(warm_job["id"])["status"]
    narrator.say(
        f"warm box: enqueue → first token {warm:.2f}s" + ("" if warm_status == "succeeded" else f" (job {warm_status})")
    )


def _burst(client: JobsClient, narrator: _Narrator, count: int = 12) -> None:
    """A burst the first box would take a while to drain: the pool's scale rule starts the second box."""
    t_submit = time.monotonic()
    body = {"model": MODEL, "options": {"num_predict": 40}}
    jobs = [client.submit({**body, "prompt": f"burst {i} [{uuid.uuid4().hex[:4]}]"}) for i in range(count)]
    narrator.say(f"burst: {count} jobs of 40 tokens, 2 at once a box")
    started: dict[str, str] = {}
    while len(started) < 2 and time.monotonic() - t_submit < 30:
        for box in client.instances()["instances"]:
            if box["state"] != "stopped" and box["id"] not in started:
                why = box.get("start_reason") or {}
                started[box["id"]] = str(why.get("reason", ""))
                if box["id"] != "local-1":
                    narrator.say(
                        f"box {box['id']} started: {started[box['id']]} "
                        f"(queued work {why.get('queued_work_s', 0):.1f}s, {why.get('slots_per_box')} slots a box)"
                    )
        time.sleep(0.1)
    done = [client.wait(j["id"], timeout_s=120, poll_s=0.1) for j in jobs]
    per_box = {b: sum(1 for j in done if j["instance_id"] == b) for b in sorted({j["instance_id"] for j in done})}
    narrator.say(
        f"burst done in {time.monotonic() - t_submit:.1f}s: "
        + ", ".join(f"{n} jobs on {b}" for b, n in per_box.items())
    )


def _boxes_stop(provider: LocalProvider, narrator: _Narrator, idle_grace_s: float) -> bool:
    """Wait (up to a minute) for every idle box to stop itself."""
    idle_from = time.monotonic()
    narrator.say(f"queue empty: each box stops itself after {idle_grace_s:g}s idle…")
    boxes = ("local-1", "local-2")
    while any(provider.get_sync(b).state is not InstanceState.STOPPED for b in boxes):
        if time.monotonic() - idle_from > 60:
            narrator.say("a box did not stop within 60s: see the agent logs")
            return False
        time.sleep(0.1)
    starts = {b: provider.start_count(b) for b in boxes}
    narrator.say(
        f"boxes local-1 and local-2 stopped themselves {time.monotonic() - idle_from:.1f}s after the last job "
        f"(starts: {', '.join(f'{b} {n}' for b, n in starts.items())})"
    )
    return True


if __name__ == "__main__":
    sys.exit(run_demo(argparse.Namespace(jobs=3)))
