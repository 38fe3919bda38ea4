"""Benchmarks: one script per claim, each measuring gpuq beside a baseline in the same run.

- ``bench.agent_stream``  the agent's streaming overhead vs. Ollama direct and Vast's PyWorker
- ``bench.control_plane`` durable enqueues/s, warm enqueue -> first token, agent ready -> job running
- ``bench.import_time``   cold-start import time of each function's entry module
- ``bench.run_all``       all three, bounded to 15 minutes (what ``make bench`` runs)

Each prints a table (targets next to the numbers, pass/miss) and writes JSON to ``bench/results/``.
"""
