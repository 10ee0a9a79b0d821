"""The AI overseer (SPEC §12): rule checks every 30 s, Claude for analysis, templates as the fallback.

Modules: :mod:`.config` (thresholds), :mod:`.findings`, :mod:`.snapshot` (input), :mod:`.checks`
(pure rules), :mod:`.reader` (Redis → snapshot), :mod:`.budget`, :mod:`.model` (the anthropic SDK
behind budget and timeout), :mod:`.prompts`, :mod:`.templates`, :mod:`.narratives` (reviews,
explanations, daily summary), :mod:`.protocols` (RiskControl, AdminAlerts), :mod:`.alerts`
(the Redis alert stream), :mod:`.sources` (the fetcher's UW source YAML: which keys, what cadence),
:mod:`.reviews` (the advisory pre-trade review of ``signals:stream``) and :mod:`.service` (the round
and its loop). Never imports Ray.
"""

from quanticity.overseer.config import OverseerConfig
from quanticity.overseer.findings import Finding, Severity
from quanticity.overseer.service import Overseer, RoundOutcome

__all__ = ["Finding", "Overseer", "OverseerConfig", "RoundOutcome", "Severity"]
