from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from core.tokens import TokenAuthority
from persona_stream.cli import build_parser, main

SECRET = "c" * 40


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert "persona-stream" in parser.format_help()
    for command in (["kafka"], ["topics"], ["schemas"], ["gateway"], ["token"], ["token", "mint"]):
        with pytest.raises(SystemExit) as raised:
            main([*command, "--help"])
        assert raised.value.code == 0
    assert "--scope" in capsys.readouterr().out


def test_token_mint_needs_the_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "mint", "--scope", "ingest", "--sub", "user-42"]) == 2
    assert "PERSONA_STREAM_TOKEN_SECRET" in capsys.readouterr().err


def test_token_mint_prints_a_token_the_gateway_accepts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PERSONA_STREAM_TOKEN_SECRET", SECRET)
    assert main(["token", "mint", "--scope", "subscribe", "--sub", "user-42", "--ttl", "15m"]) == 0
    claims = TokenAuthority(SECRET.encode()).verify(capsys.readouterr().out.strip(), ("subscribe",))
    assert (claims.subject, claims.scope) == ("user-42", "subscribe")
    assert 890 <= claims.expires_at - time.time() <= 900


def test_invalid_configuration_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PERSONA_STREAM_PARTITIONS", "zero")
    assert main(["kafka", "status"]) == 2
    assert "invalid configuration" in capsys.readouterr().err


@pytest.mark.integration
def test_the_gateway_command_serves_and_stops_cleanly_on_sigterm(kafka_bootstrap: str, unique: str) -> None:
    env = {
        **os.environ,
        "PERSONA_STREAM_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PERSONA_STREAM_TOPIC_PREFIX": unique,
        "PERSONA_STREAM_TOKEN_SECRET": SECRET,
        "PERSONA_STREAM_WS_PORT": "0",
        "PERSONA_STREAM_HTTP_PORT": "0",
    }
    subprocess.run(
        [sys.executable, "-m", "persona_stream.cli", "topics", "create"], env=env, check=True, capture_output=True
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "persona_stream.cli", "gateway"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{match.group(1)}/readyz", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_a_worker_on_a_faust_version_it_was_not_written_for_refuses_to_start(tmp_path: object) -> None:
    from pathlib import Path

    site = Path(str(tmp_path))
    info = site / "faust_streaming-0.16.0.dist-info"  # found before the real one: faust 0.16.0 "installed"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: faust-streaming\nVersion: 0.16.0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONA_STREAM_")}
    env |= {"PYTHONPATH": str(site), "PERSONA_STREAM_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "persona_stream.cli", "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "written against faust-streaming 0.15.3, but faust-streaming 0.16.0 is installed" in done.stderr
    assert "[unsupported-version]" in done.stderr


def test_gateway_processes_refuse_a_port_another_program_listens_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("PERSONA_STREAM_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # never reached
        monkeypatch.setenv("PERSONA_STREAM_TOKEN_SECRET", SECRET)
        monkeypatch.setenv("PERSONA_STREAM_WS_PORT", str(port))
        assert main(["gateway", "--processes", "2"]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "[port-in-use]" in err


def test_gateway_processes_must_not_be_negative(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", "--processes", "-1"]) == 2
    assert "--processes must be 0 (one per core) or more" in capsys.readouterr().err


def test_bench_is_a_subcommand_through_its_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    assert "bench" in build_parser().format_help()
    assert main(["bench", "no-such-scenario"]) == 2
    assert "no benchmark no-such-scenario" in capsys.readouterr().err
