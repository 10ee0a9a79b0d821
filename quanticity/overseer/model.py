"""The only door to Claude: budget, hard timeout, error classification and counting.

Every caller gets either the model's text or ``None`` with a reason, never an exception, so the
rule and template paths take over without a try/except at each call site. The timeout is
enforced twice: by the SDK (``timeout``) and by ``asyncio.wait_for`` around the call, because a
stalled connection must not hold a 30-second check round hostage. ``max_retries`` is 0: a retry
would spend the round's time budget; the next round simply asks again.

The SDK is imported when a client is built or called, not with this module: the configuration
models import the overseer package, so every actor process would otherwise pay the SDK's ~1 s
import at start, though only the overseer ever talks to the model.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from quanticity.overseer.budget import Budget
from quanticity.overseer.config import ModelConfig
from quanticity.overseer.counters import Counters

if TYPE_CHECKING:
    import anthropic

SYSTEM_PROMPT = (
    "You are the risk overseer of an automated options-trading platform that only buys single-leg "
    "calls and puts. Be brief, factual and conservative. Follow the requested reply format exactly."
)


@dataclass(frozen=True)
class ModelReply:
    """The model's text, or None and why (``no_key``, ``timeout``, ``status_529``, ``budget_tokens`` …)."""

    text: str | None
    fallback_reason: str | None = None

    @property
    def ok(self) -> bool:
        """True when the model answered."""
        return self.text is not None


def build_client(config: ModelConfig, env: Mapping[str, str] | None = None) -> anthropic.AsyncAnthropic | None:
    """An SDK client when the model is enabled and its key is set in the environment, else None."""
    env = os.environ if env is None else env
    key = env.get(config.api_key_env, "").strip()
    if not config.enabled or not key:
        return None
    import anthropic  # deferred (module docstring)

    return anthropic.AsyncAnthropic(api_key=key, base_url=config.base_url, max_retries=0, timeout=config.timeout_s)


class ModelGateway:
    """Asks Claude within budget and time; counts calls, failures and fallbacks."""

    def __init__(
        self,
        config: ModelConfig,
        client: anthropic.AsyncAnthropic | None,
        budget: Budget,
        counters: Counters,
    ) -> None:
        self._config = config
        self._client = client
        self._budget = budget
        self._counters = counters

    @property
    def available(self) -> bool:
        """True when a client exists (enabled and keyed)."""
        return self._client is not None

    def _fallback(self, task: str, reason: str) -> ModelReply:
        self._counters.add(f"fallback.{reason}")
        self._counters.add(f"fallback.task.{task}")
        return ModelReply(None, reason)

    async def complete(self, task: str, prompt: str, max_tokens: int) -> ModelReply:
        """The model's reply to ``prompt``, or a fallback reason; never raises for API trouble."""
        if self._client is None:
            return self._fallback(task, "no_key" if self._config.enabled else "disabled")
        refusal = self._budget.refusal(max_tokens)
        if refusal is not None:
            return self._fallback(task, refusal)
        import anthropic  # deferred (module docstring); already loaded once a client exists

        self._counters.add("model.calls")
        self._counters.add(f"model.calls.{task}")
        tokens = 0
        try:
            message = await asyncio.wait_for(
                self._client.messages.create(
                    model=self._config.model,
                    max_tokens=max_tokens,
                    system=SYSTEM_PROMPT,
                    messages=[{"role": "user", "content": prompt}],
                ),
                timeout=self._config.timeout_s,
            )
            tokens = int(message.usage.input_tokens) + int(message.usage.output_tokens)
        except (TimeoutError, anthropic.APITimeoutError):
            return self._failure(task, "timeout")
        except anthropic.APIStatusError as exc:
            return self._failure(task, f"status_{exc.status_code}")
        except anthropic.APIConnectionError:
            return self._failure(task, "connection")
        except anthropic.AnthropicError as exc:  # response validation and other SDK-level failures
            return self._failure(task, type(exc).__name__)
        finally:
            self._budget.record(1, tokens)
            self._counters.add("budget.tokens", tokens)
        text = "".join(block.text for block in message.content if getattr(block, "type", "") == "text").strip()
        if not text:
            return self._failure(task, "empty")
        self._counters.add("model.ok")
        return ModelReply(text)

    def _failure(self, task: str, reason: str) -> ModelReply:
        self._counters.add("model.failures")
        self._counters.add(f"model.failures.{reason}")
        return self._fallback(task, reason)
