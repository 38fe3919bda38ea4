"""Reading a model server's output: lines (also progress-bar redraws), patterns, reasons, the start-up tail."""

from __future__ import annotations

from agent.server_log import (
    MAX_LINE_CHARS,
    LineKind,
    LineSplitter,
    LogPatterns,
    StartupTail,
    clean_line,
    parse_patterns,
)


def test_patterns_are_pipe_separated_substrings() -> None:
    assert parse_patterns(" CUDA out of memory| address already in use ||") == (
        "CUDA out of memory",
        "address already in use",
    )
    assert parse_patterns("") == ()


def test_errors_win_over_load_and_load_over_info() -> None:
    patterns = LogPatterns.parse("startup complete", "RuntimeError|CUDA out of memory", "Loading|Downloading")
    assert patterns.classify("INFO:     Application startup complete.") is LineKind.LOAD
    assert patterns.classify("Loading safetensors checkpoint shards:  50% Completed | 1/2") is LineKind.INFO
    assert patterns.classify("RuntimeError: Loading failed, startup complete never came") is LineKind.ERROR
    assert patterns.classify("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate") is LineKind.ERROR
    assert patterns.classify("INFO: 127.0.0.1 - GET /v1/models 200") is None
    assert patterns.classify("loading weights") is None  # case-sensitive, as PyWorker matches


def test_carriage_returns_end_lines_so_each_progress_redraw_is_seen() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"Downloading:  10%|\xe2\x96\x88   |\rDownloading:  43%|\xe2\x96\x88\xe2\x96\x88") == [
        "Downloading:  10%|\u2588   |"
    ]
    assert splitter.feed(b"  |\r\nready\npart") == ["Downloading:  43%|\u2588\u2588  |", "ready"]
    assert splitter.close() == ["part"]
    assert splitter.close() == []


def test_split_utf8_and_blank_lines_and_overlong_runs() -> None:
    splitter = LineSplitter()
    encoded = "caf\u00e9\n\n   \n".encode()
    assert splitter.feed(encoded[:4]) == []  # half of "é": kept until the rest comes
    assert splitter.feed(encoded[4:]) == ["caf\u00e9"]
    assert splitter.feed(b"bad \xff byte\n") == ["bad \ufffd byte"]
    long = splitter.feed(b"x" * (MAX_LINE_CHARS * 2 + 5))
    assert [len(line) for line in long] == [MAX_LINE_CHARS, MAX_LINE_CHARS]
    assert splitter.close() == ["xxxxx"]


def test_a_reason_has_no_colours_no_bars_and_a_bounded_length() -> None:
    raw = "\x1b[32mDownloading\x1b[0m model.safetensors:  43%|\u2588\u2588\u2588\u2588\u258e     | 2.1G/4.9G"
    assert clean_line(raw) == "Downloading model.safetensors: 43%| | 2.1G/4.9G"
    assert len(clean_line("word " * 100)) == 100 and clean_line("word " * 100).endswith("…")


def test_the_tail_keeps_the_last_start_up_lines_only() -> None:
    tail = StartupTail(3)
    for i in range(10):
        tail.add(f"line {i}")
    assert tail.lines() == ["line 7", "line 8", "line 9"]
    tail.recording = False  # the server is up: what it prints now may hold prompts
    tail.add("POST /v1/chat/completions prompt: secret")
    assert tail.lines() == ["line 7", "line 8", "line 9"]
    tail.restart()
    tail.add("restarted")
    assert tail.lines() == ["line 8", "line 9", "restarted"]
