"""equitune: turn an open LLM into a grounded equity-research assistant and serve it with Ollama.

The public classes of each stage are importable from here (``from equitune import
EquityResearchTrainingDataGenerator``); they load on first use, so ``import equitune`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "EquityResearchTrainingDataGenerator": "equitune.data.generator",
    "EquituneConfig": "equitune.config",
    "load_config": "equitune.config",
    "Company": "equitune.market.models",
    "get_provider": "equitune.market.base",
    "analyze_company": "equitune.finance.analysis",
    "ValuationAssumptions": "equitune.finance.assumptions",
    "EquityResearchEvaluator": "equitune.evaluate.benchmark",
    "EnhancedEquityResearchGenerator": "equitune.report.generator",
    "evaluate_recent_outputs": "equitune.evaluate.monitor",
    "trigger_retraining_alert": "equitune.evaluate.monitor",
    "run_workflow": "equitune.pipeline",
}
__all__ = [
    "Company",
    "EnhancedEquityResearchGenerator",
    "EquityResearchEvaluator",
    "EquityResearchTrainingDataGenerator",
    "EquituneConfig",
    "ValuationAssumptions",
    "__version__",
    "analyze_company",
    "get_provider",
    "evaluate_recent_outputs",
    "load_config",
    "run_workflow",
    "trigger_retraining_alert",
]

if TYPE_CHECKING:
    from equitune.config import EquituneConfig, load_config
    from equitune.data.generator import EquityResearchTrainingDataGenerator
    from equitune.evaluate.benchmark import EquityResearchEvaluator
    from equitune.evaluate.monitor import evaluate_recent_outputs, trigger_retraining_alert
    from equitune.finance.analysis import analyze_company
    from equitune.finance.assumptions import ValuationAssumptions
    from equitune.market.base import get_provider
    from equitune.market.models import Company
    from equitune.pipeline import run_workflow
    from equitune.report.generator import EnhancedEquityResearchGenerator


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'equitune' has no attribute {name!r}")
