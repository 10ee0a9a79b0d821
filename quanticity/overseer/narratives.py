"""The overseer's writing jobs: advisory pre-trade reviews, post-fill explanations, the daily summary.

Each asks the model through the gateway and falls back to a template built from the same facts,
so a message always goes out. The pre-trade review is advisory only (SPEC §12): it returns a note
for the signal's record and the admin, it never blocks or delays an order — the risk gate decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from quanticity.messages import Fill, Signal
from quanticity.overseer import prompts, templates
from quanticity.overseer.config import OverseerConfig
from quanticity.overseer.counters import Counters
from quanticity.overseer.model import ModelGateway


@dataclass(frozen=True)
class Review:
    """An advisory review: whether anything looks wrong, why, and who said so (``model``/``rules``)."""

    red_flag: bool
    note: str
    source: str


@dataclass(frozen=True)
class Narrative:
    """A text for people and who wrote it (``model`` or ``template``)."""

    text: str
    source: str


@dataclass(frozen=True)
class ClosedTrade:
    """One closed trade of the day for the summary: a label (``SPY 450C``) and its net P&L."""

    label: str
    pnl: float


def summary_facts(trades: Sequence[ClosedTrade]) -> dict[str, str]:
    """The figures of the daily summary (shared by the prompt and the template)."""
    wins = sum(1 for t in trades if t.pnl > 0)
    total = sum(t.pnl for t in trades)
    best = max(trades, key=lambda t: t.pnl, default=None)
    worst_trade = min(trades, key=lambda t: t.pnl, default=None)
    return {
        "Trades": str(len(trades)),
        "Win rate": f"{wins / len(trades):.0%}" if trades else "n/a",
        "P&L": f"${total:+,.2f}",
        "Best trade": f"{best.label} ${best.pnl:+,.2f}" if best else "none",
        "Worst trade": f"{worst_trade.label} ${worst_trade.pnl:+,.2f}" if worst_trade else "none",
    }


class Narrator:
    """Reviews, explanations and summaries with model-or-template behaviour."""

    def __init__(self, config: OverseerConfig, gateway: ModelGateway, counters: Counters) -> None:
        self._config = config
        self._gateway = gateway
        self._counters = counters

    def needs_review(self, signal: Signal) -> bool:
        """True for entries of the complex strategies (exits are never reviewed)."""
        return not signal.is_exit and signal.strategy in self._config.review_strategies

    def rule_flags(self, signal: Signal) -> list[str]:
        """The deterministic red flags of ``signal`` (wide spread, low confidence, no market)."""
        flags = []
        bid, ask = signal.reference_bid, signal.reference_ask
        mid = (bid + ask) / 2
        if bid <= 0 or ask <= 0 or ask < bid:
            flags.append(f"no usable market (bid {bid:g}, ask {ask:g})")
        elif (ask - bid) / mid * 100 > self._config.review_max_spread_pct:
            flags.append(f"spread {(ask - bid) / mid:.1%} of mid > {self._config.review_max_spread_pct:g}%")
        if signal.confidence < self._config.review_min_confidence:
            flags.append(f"confidence {signal.confidence} < {self._config.review_min_confidence}")
        return flags

    async def review_signal(self, signal: Signal) -> Review:
        """Advisory review: rule flags always apply; the model may add a red flag of its own."""
        self._counters.add("reviews")
        flags = self.rule_flags(signal)
        facts = {
            "Symbol": signal.symbol,
            "Strategy": signal.strategy,
            "Direction": signal.direction.value,
            "Contract": signal.contract.key,
            "Entry": f"bid {signal.reference_bid:g} / ask {signal.reference_ask:g}",
            "Confidence": str(signal.confidence),
            "Triggers": signal.reason,
            "Rule flags": "; ".join(flags) or "none",
        }
        prompt = prompts.review_prompt(facts)
        reply = await self._gateway.complete("signal_review", prompt, self._model_tokens("review"))
        parsed = prompts.parse_review(reply.text) if reply.text is not None else None
        if reply.text is not None and parsed is None:
            self._counters.add("fallback.unparseable")
        if parsed is None:
            review = Review(bool(flags), templates.review_note(flags), "rules")
        else:
            model_flag, note = parsed
            combined = "; ".join([*flags, note] if model_flag or flags else [note or "no red flags"])
            review = Review(model_flag or bool(flags), combined, "model")
        if review.red_flag:
            self._counters.add("reviews.red_flag")
        return review

    async def explain_fill(self, fill: Fill, signal: Signal | None = None) -> Narrative:
        """The premium subscribers' explanation of an entry fill."""
        facts = {
            "Contract": fill.contract.key,
            "Quantity": str(fill.quantity),
            "Fill price": f"${fill.price:.2f}",
            "Premium at risk": f"${fill.price * fill.quantity * 100:,.2f}",
            "Strategy": fill.strategy,
        }
        if signal is not None:
            facts["Triggers"] = signal.reason
            facts["Confidence"] = str(signal.confidence)
        return await self._narrate("trade_explanation", prompts.explanation_prompt(facts), facts)

    async def daily_summary(self, trades: Sequence[ClosedTrade]) -> Narrative:
        """The end-of-day performance summary."""
        facts = summary_facts(trades)
        return await self._narrate("daily_summary", prompts.summary_prompt(facts), facts)

    async def _narrate(self, task: str, prompt: str, facts: dict[str, str]) -> Narrative:
        max_tokens = self._model_tokens("explanation" if task == "trade_explanation" else "summary")
        reply = await self._gateway.complete(task, prompt, max_tokens)
        if reply.text is not None:
            return Narrative(reply.text, "model")
        render = templates.trade_explanation if task == "trade_explanation" else templates.daily_summary
        return Narrative(render(facts), "template")

    def _model_tokens(self, job: str) -> int:
        model = self._config.model
        return {
            "review": model.review_max_tokens,
            "explanation": model.explanation_max_tokens,
            "summary": model.summary_max_tokens,
        }[job]
