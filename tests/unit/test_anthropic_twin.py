"""The Anthropic Messages twin, driven by the real ``anthropic`` SDK (and raw HTTP for what the SDK hides)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import aiohttp
import anthropic
import pytest

from quanticity.sim.anthropic_server import AnthropicTwin, estimate_tokens

pytestmark = pytest.mark.unit

MODEL = "claude-haiku-4-5"
KEY = "sk-test-key"


def _client(twin: AnthropicTwin, key: str = KEY, timeout: float = 5.0) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=key, base_url=twin.base_url, max_retries=0, timeout=timeout)


async def _ask(client: anthropic.AsyncAnthropic, text: str, max_tokens: int = 200) -> anthropic.types.Message:
    return await client.messages.create(
        model=MODEL, max_tokens=max_tokens, messages=[{"role": "user", "content": text}]
    )


def run_with_twin(body, api_key: str | None = KEY):  # noqa: ANN001, ANN201 - test helper
    async def main():  # noqa: ANN202
        twin = AnthropicTwin(api_key=api_key)
        await twin.start()
        try:
            return await body(twin)
        finally:
            await twin.stop()

    return asyncio.run(main())


def test_reply_has_the_real_shape_and_a_verdict_derived_from_the_prompt() -> None:
    async def body(twin: AnthropicTwin) -> None:
        prompt = "TASK: anomaly_analysis\n- [WARNING] staleness.uw_spot_gex SPY: old\n- [CRITICAL] x: y"
        message = await _ask(_client(twin), prompt)
        assert message.type == "message" and message.role == "assistant" and message.model == MODEL
        assert message.id.startswith("msg_") and message.stop_reason == "end_turn"
        assert message.content[0].type == "text"
        assert message.content[0].text.splitlines()[0] == "VERDICT: CRITICAL"
        assert message.usage.output_tokens == estimate_tokens(message.content[0].text)
        quiet = await _ask(_client(twin), "TASK: anomaly_analysis\n- [WARNING] a: b")
        assert quiet.content[0].text.startswith("VERDICT: WARNING")
        assert twin.requests[-1].prompt.endswith("[WARNING] a: b")

    run_with_twin(body)


def test_scripted_rule_overrides_the_first_line_and_max_tokens_truncates() -> None:
    async def body(twin: AnthropicTwin) -> None:
        twin.add_rule(r"staleness", "VERDICT: CRITICAL")
        ruled = await _ask(_client(twin), "TASK: anomaly_analysis\n- [WARNING] staleness.uw_chains QQQ: old")
        assert ruled.content[0].text.startswith("VERDICT: CRITICAL")
        short = await _ask(_client(twin), "TASK: anomaly_analysis\n- [OK] a: b", max_tokens=5)
        assert short.stop_reason == "max_tokens" and short.usage.output_tokens <= 5

    run_with_twin(body)


def test_authentication_and_validation_errors_use_the_real_envelope() -> None:
    async def body(twin: AnthropicTwin) -> None:
        with pytest.raises(anthropic.AuthenticationError) as bad_key:
            await _ask(_client(twin, key="wrong"), "hi")
        assert bad_key.value.body == {
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        }
        with pytest.raises(anthropic.NotFoundError):
            await _client(twin).messages.create(
                model="gpt-4", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
        with pytest.raises(anthropic.BadRequestError) as bad_role:
            await _client(twin).messages.create(model=MODEL, max_tokens=5, messages=[{"role": "robot", "content": "x"}])
        assert "messages.0.role" in bad_role.value.body["error"]["message"]
        url = f"{twin.base_url}/v1/messages"
        async with aiohttp.ClientSession() as http:
            headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
            async with http.post(url, json={"model": MODEL, "messages": []}, headers=headers) as resp:
                assert resp.status == 400
                assert (await resp.json())["error"] == {
                    "type": "invalid_request_error",
                    "message": "max_tokens: Field required",
                }
                assert resp.headers["request-id"].startswith("req_")
            async with http.post(url, json={"model": MODEL, "max_tokens": 1}, headers={"x-api-key": KEY}) as resp:
                assert resp.status == 400
                assert (await resp.json())["error"]["message"] == "anthropic-version: header is required"
            async with http.post(url, data="{not json", headers=headers) as resp:
                assert resp.status == 400 and (await resp.json())["type"] == "error"
        assert twin.counts["authentication_error"] == 1 and twin.counts["invalid_request_error"] == 4

    run_with_twin(body)


@pytest.mark.parametrize(
    ("kind", "error", "status", "error_type"),
    [
        ("rate_limit", anthropic.RateLimitError, 429, "rate_limit_error"),
        ("api_error", anthropic.InternalServerError, 500, "api_error"),
        ("overloaded", anthropic.OverloadedError, 529, "overloaded_error"),
    ],
)
def test_injected_faults_fail_exactly_the_next_n_requests(
    kind: str, error: type[anthropic.APIStatusError], status: int, error_type: str
) -> None:
    async def body(twin: AnthropicTwin) -> None:
        twin.inject_fault(kind, count=2, retry_after_s=7)
        for _ in range(2):
            with pytest.raises(error) as failed:
                await _ask(_client(twin), "hello")
            assert failed.value.status_code == status
            assert failed.value.body["error"]["type"] == error_type
            if kind == "rate_limit":
                assert failed.value.response.headers["retry-after"] == "7"
        assert (await _ask(_client(twin), "hello")).stop_reason == "end_turn"

    run_with_twin(body)


def test_slow_reply_times_the_client_out_and_stop_does_not_wait_for_it() -> None:
    async def body(twin: AnthropicTwin) -> float:
        twin.inject_fault("slow", delay_s=60)
        started = time.perf_counter()
        with pytest.raises(anthropic.APITimeoutError):
            await _ask(_client(twin, timeout=0.3), "hello")
        assert time.perf_counter() - started < 5
        return time.perf_counter()

    before_stop = run_with_twin(body)
    assert time.perf_counter() - before_stop < 5  # the 60 s delay was released by stop()


def test_control_routes_and_bad_fault_specs() -> None:
    async def body(twin: AnthropicTwin) -> None:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{twin.base_url}/_twin/faults", json={"kind": "overloaded"}) as resp:
                assert resp.status == 200
            async with http.post(f"{twin.base_url}/_twin/faults", json={"kind": "melted"}) as resp:
                assert resp.status == 400 and "melted" in (await resp.json())["error"]["message"]
        with pytest.raises(anthropic.OverloadedError):
            await _ask(_client(twin), "hello")
        async with aiohttp.ClientSession() as http, http.get(f"{twin.base_url}/_twin/requests") as resp:
            assert [r["outcome"] for r in await resp.json()] == ["overloaded"]
        with pytest.raises(ValueError, match="delay_s"):
            twin.inject_fault("slow")

    run_with_twin(body)


def test_runs_alone_with_python_dash_m() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "quanticity.sim.anthropic_server", "--port", "0", "--api-key", KEY],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        port = int(banner.rsplit(":", 1)[1])
        client = anthropic.Anthropic(api_key=KEY, base_url=f"http://127.0.0.1:{port}", max_retries=0, timeout=5)
        reply = client.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "ping"}])
        assert reply.content[0].text.startswith("OK")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
