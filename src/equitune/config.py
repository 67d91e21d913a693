"""Typed configuration: defaults < config file (JSON or YAML) < command-line overrides.

The file format is the original design's ``finetune_config.json``: ``model_selection``, ``lora_config``,
``training``, ``paths``, plus ``market`` (where fundamentals come from) and ``valuation`` (the finance
engine's assumptions). Every model forbids unknown keys, so a misspelt key is an error that names the
key, the file (and line) and the closest valid key.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from equitune.errors import ConfigError
from equitune.evaluate.weights import RubricWeights
from equitune.finance.assumptions import ValuationAssumptions
from equitune.io import atomic_write_text
from equitune.serve.runtime import DEFAULT_BATCH_SIZE

DEFAULT_CONFIG_FILE = "finetune_config.json"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSelection(_Section):
    """Which base model to fine-tune, and named alternatives a user can switch to."""

    base_model: str = Field(
        "llama3.1:8b",
        min_length=1,
        description="Base model: 'smollm2:135m' (embedded), an Ollama name, a .gguf path or a HF repo id.",
    )
    alternatives: dict[str, str] = Field(
        default_factory=lambda: {"fast": "llama2:7b", "quality": "llama3.1:70b", "efficient": "mistral:7b"},
        description="Named alternative base models (fast, quality, efficient, ...).",
    )


class LoraConfig(_Section):
    """Low-rank adapter settings."""

    rank: int = Field(16, ge=1, le=1024, description="LoRA rank r.")
    alpha: float = Field(32, gt=0, le=4096, description="LoRA scaling alpha (effective scale alpha / rank).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        min_length=1,
        description="Names of the linear layers that get adapters.",
    )


class TrainingConfig(_Section):
    """Optimisation hyperparameters (the original design's values are the defaults)."""

    learning_rate: float = Field(2e-5, gt=0, le=1, description="Peak learning rate.")
    batch_size: int = Field(4, ge=1, le=4096, description="Examples per micro-batch on each device.")
    num_epochs: float = Field(3, gt=0, le=1000, description="Passes over the training set (ignored if max_steps).")
    warmup_steps: int = Field(100, ge=0, description="Linear warm-up of the learning rate, in optimiser steps.")
    gradient_accumulation_steps: int = Field(8, ge=1, le=4096, description="Micro-batches per optimiser step.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimiser steps (overrides epochs).")
    max_seq_length: int = Field(2048, ge=16, le=1_048_576, description="Longer examples are truncated (reported).")
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 = off).")
    lr_scheduler: Literal["cosine", "linear", "constant"] = Field("cosine", description="Decay after warm-up.")
    seed: int = Field(42, ge=0, description="Seed for data order and adapter initialisation.")
    logging_steps: int = Field(1, ge=1, description="Write a metrics.jsonl line every N optimiser steps.")
    eval_steps: int = Field(50, ge=1, description="Evaluate on valid.jsonl every N optimiser steps.")
    max_eval_examples: int | None = Field(
        None, ge=1, description="Validation examples per evaluation, evenly spaced over valid.jsonl (null = all)."
    )
    save_steps: int = Field(50, ge=1, description="Write a resumable checkpoint every N optimiser steps.")
    keep_checkpoints: int = Field(
        2, ge=0, description="Checkpoints kept in finetuned_models/<name>/checkpoints/, the newest (0 = every one)."
    )
    early_stopping_patience: int | None = Field(
        3, ge=1, description="Stop after N evaluations without a better validation loss (null = never)."
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")
    precision: Literal["auto", "int8", "bf16", "fp16", "fp32"] = Field(
        "auto",
        description="Compute precision; int8 (CPU) = int8 matmuls through the frozen base weights (the output "
        "layer's logits and logit gradient too), adapters, attention and evaluation in fp32; auto = bf16 on a "
        "bf16 GPU; on a CPU int8 where it has int8 dot-product instructions (VNNI/AMX), else bf16 where a bf16 "
        "matmul measures faster than fp32, else fp32.",
    )
    compile: Literal["auto", "always", "never"] = Field(
        "auto",
        description="torch.compile the decoder layers' training forward (fuses the elementwise work around the "
        "matmuls; a one-off compilation of 20-60 s, needs a C++ compiler on CPU); auto = on a CPU for models of "
        "50M parameters or more; never with gradient checkpointing or fsdp.",
    )
    backend: Literal["auto", "transformers", "unsloth", "mlx"] = Field(
        "auto", description="Trainer backend; auto picks unsloth on CUDA, mlx on Apple Silicon, else transformers."
    )
    distributed_strategy: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="With --distributed: ddp replicates the model on every process; fsdp also shards the frozen base "
        "weights of each decoder layer over the processes (FSDP), for bases too large for one device.",
    )
    output_name: str = Field("equity_research_llama", min_length=1, description="Folder under finetuned_models/.")


class PathsConfig(_Section):
    """Where each stage writes; relative paths are relative to the working directory."""

    training_data: Path = Field(Path("training_data"), description="Generated training data (JSONL, stats).")
    finetuned_models: Path = Field(Path("finetuned_models"), description="Adapters, merged models, GGUF files.")
    evaluation_results: Path = Field(Path("evaluation_results"), description="Evaluation runs and reports.")
    finetuning_workflow: Path = Field(Path("finetuning_workflow"), description="Workflow state and reports.")
    logs: Path = Field(Path("logs"), description="Log files (ollama_equity_research.log).")
    registry: Path = Field(
        Path("finetuned_models/registry.sqlite"), description="Model registry (SQLite) of every exported version."
    )


class MarketConfig(_Section):
    """Where company fundamentals come from."""

    provider: Literal["embedded", "csv", "yfinance", "edgar"] = Field(
        "embedded", description="Market-data provider; 'embedded' works offline."
    )
    csv_file: Path | None = Field(None, description="Fundamentals file for the 'csv' provider.")
    csv_mapping: str | None = Field(None, description="Column-mapping preset for the 'csv' provider, e.g. 'sp500'.")
    csv_as_of: dt.date | None = Field(
        None, description="Date the csv file's figures describe (default: the file's modification date)."
    )
    cache_dir: Path | None = Field(None, description="On-disk cache of the live providers.")
    user_agent: str | None = Field(None, description="User-Agent for SEC EDGAR (name and contact e-mail).")


class DataConfig(_Section):
    """Training-data generation (``equitune data generate`` / ``create_training_data.py``)."""

    num_examples: int = Field(500, ge=1, le=1_000_000, description="Examples generated from the embedded data.")
    format: Literal["messages", "alpaca"] = Field("messages", description="JSONL format: chat messages or alpaca.")
    seed: int = Field(42, ge=0, description="Seed of sampling, phrasing and the company split.")
    train_fraction: float = Field(0.8, gt=0, lt=1, description="Share of companies in train.")
    valid_fraction: float = Field(0.1, ge=0, lt=1, description="Share of companies in valid (test: the rest).")
    conditions: list[str] = Field(
        default_factory=lambda: [
            "base",
            "rates_up_100bp",
            "rates_down_100bp",
            "recession",
            "risk_off",
            "expansion",
        ],
        min_length=1,
        description="Market-condition variants the engine computes examples under.",
    )
    families: list[str] = Field(
        default_factory=lambda: [
            "executive_summary",
            "financial_analysis",
            "valuation",
            "investment_thesis",
            "risk_assessment",
            "industry_analysis",
        ],
        min_length=1,
        description="Task families to generate (a short-context CPU run may keep only executive_summary).",
    )
    balance_ratings: bool = Field(True, description="Draw Buy, Hold and Sell examples in equal numbers.")
    max_response_tokens: int = Field(2048, ge=16, description="Longest response accepted (estimated tokens).")

    @model_validator(mode="after")
    def _fractions(self) -> DataConfig:
        if self.train_fraction + self.valid_fraction >= 1:
            raise ValueError("train_fraction + valid_fraction must leave a share of companies for test")
        from equitune.finance.conditions import CONDITIONS

        unknown = [c for c in self.conditions if c not in CONDITIONS]
        if unknown:
            raise ValueError(f"unknown conditions {unknown}; valid: {', '.join(CONDITIONS)}")
        from equitune.data.families import FAMILY_IDS

        strange = [f for f in self.families if f not in FAMILY_IDS]
        if strange:
            raise ValueError(f"unknown families {strange}; valid: {', '.join(FAMILY_IDS)}")
        return self


GGUFType = Literal["f16", "q8_0", "q4_K_M", "bf16", "f32"]


class ExportConfig(_Section):
    """Export to GGUF and Ollama."""

    model_name: str = Field("equity_research_llama", description="Ollama model name; a tag (name:v2) is a version.")
    formats: list[GGUFType] = Field(
        default_factory=lambda: list[GGUFType](["f16"]),
        description="Merged GGUF files to write (the first is the one registered).",
    )
    adapter_gguf: bool = Field(True, description="Also write the LoRA adapter alone as a GGUF adapter.")
    mode: Literal["merged", "adapter"] = Field(
        "merged", description="What the Modelfile uses: the merged GGUF, or FROM the base + ADAPTER."
    )
    verify: bool = Field(True, description="Check the GGUF files with llama.cpp against PyTorch before use.")
    ollama_host: str = Field("http://localhost:11434", description="Ollama server address (OLLAMA_HOST overrides).")
    num_ctx: int = Field(4096, ge=256, le=1_048_576, description="Context window written to the Modelfile.")
    temperature: float = Field(0.2, ge=0, le=2, description="Sampling temperature written to the Modelfile.")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling written to the Modelfile.")
    repeat_penalty: float = Field(1.1, ge=0, le=3, description="Repeat penalty written to the Modelfile.")
    num_predict: int = Field(1024, ge=-2, le=1_048_576, description="Maximum tokens per answer (-1: no limit).")


def _all_families() -> list[str]:
    from equitune.data.families import FAMILY_IDS

    return list(FAMILY_IDS)


class EvaluationConfig(_Section):
    """Evaluation: the rubric's weights, the held-out prompts, decoding and the statistics of a benchmark."""

    weights: RubricWeights = Field(default_factory=RubricWeights, description="Rubric category weights (sum to 1).")
    families: list[str] = Field(
        default_factory=_all_families, description="Task families of the default prompts (test-split companies)."
    )
    conditions: list[str] = Field(
        default_factory=lambda: ["base"], description="Market conditions of the default prompts."
    )
    closed_book: bool = Field(
        False, description="Default prompts without their DATA block: what a model states from memory."
    )
    max_prompts: int | None = Field(
        None, ge=1, description="Use at most N default prompts, spread over families (null = all)."
    )
    max_tokens: int = Field(768, ge=16, le=32768, description="Longest answer generated per prompt (tokens).")
    temperature: float = Field(
        0.0, ge=0, le=2, description="0 = greedy; --samples k > 1 samples at this temperature (0.7 if 0)."
    )
    repeat_penalty: float = Field(
        1.1, ge=0, le=3, description="Repeat penalty while generating (1.0 = none; the Modelfile's default is 1.1)."
    )
    grounded: bool = Field(
        False,
        description="Grounded decoding of the held-out answers: the embedded llama.cpp runtime lets the model write "
        "only numerals of the prompt's DATA block, years and small counts (equitune.serve.grounding).",
    )
    grounded_report: bool = Field(
        True,
        description="Grounded decoding of the research report's sections (the embedded llama.cpp runtime; other "
        "runtimes cannot apply it and the report says so).",
    )
    samples: int = Field(1, ge=1, le=100, description="Answers per prompt and model (1 = one greedy answer).")
    batch_size: int = Field(
        DEFAULT_BATCH_SIZE,
        ge=1,
        le=256,
        description="Answers generated at once: sequences decoded together by llama.cpp, requests in flight to "
        "Ollama or an OpenAI-compatible server (see benchmarks/generation_throughput.py for the measurement).",
    )
    seed: int = Field(0, ge=0, description="Seed of sampled decoding and of the bootstrap.")
    bootstrap_resamples: int = Field(10000, ge=100, le=1_000_000, description="Bootstrap resamples of the mean delta.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence level of the bootstrap interval.")
    runtime: Literal["auto", "llama.cpp", "ollama"] = Field(
        "auto", description="Where models run: Ollama when it serves them, else llama.cpp (auto)."
    )
    n_ctx: int = Field(4096, ge=256, le=1_048_576, description="Context window for llama.cpp generation.")
    judge: str | None = Field(None, description="Model that also scores answers as a judge (null = off).")

    @model_validator(mode="after")
    def _known(self) -> EvaluationConfig:
        from equitune.data.families import FAMILY_IDS
        from equitune.finance.conditions import CONDITIONS

        unknown = [c for c in self.conditions if c not in CONDITIONS]
        if unknown:
            raise ValueError(f"unknown conditions {unknown}; valid: {', '.join(CONDITIONS)}")
        strange = [f for f in self.families if f not in FAMILY_IDS]
        if strange:
            raise ValueError(f"unknown families {strange}; valid: {', '.join(FAMILY_IDS)}")
        if not self.families or not self.conditions:
            raise ValueError("evaluation.families and evaluation.conditions must not be empty")
        return self


class MonitoringConfig(_Section):
    """Production monitoring: where generated reports are logged, and what happens when quality drops."""

    log_file: Path = Field(
        Path("logs/production_outputs.jsonl"), description="JSONL log of reports generated in production."
    )
    scores_file: Path = Field(
        Path("evaluation_results/monitoring/daily_scores.jsonl"), description="One line per monitored day."
    )
    alerts_file: Path = Field(
        Path("evaluation_results/monitoring/alerts.jsonl"), description="One line per retraining alert."
    )
    threshold: float = Field(65.0, ge=0, le=100, description="Alert when the mean score falls below this.")
    since: str = Field("1d", description="Default window of `equitune monitor` (e.g. 12h, 1d, 7d).")
    alert_command: str | None = Field(
        None, description="Shell command run on an alert (the alert JSON on stdin; null = none)."
    )
    alert_webhook: str | None = Field(None, description="URL the alert JSON is POSTed to (null = none).")


class EquituneConfig(_Section):
    """The whole resolved configuration."""

    model_selection: ModelSelection = Field(default_factory=ModelSelection, description="Base model choice.")
    lora_config: LoraConfig = Field(default_factory=LoraConfig, description="LoRA adapter settings.")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Training hyperparameters.")
    paths: PathsConfig = Field(default_factory=PathsConfig, description="Output folders.")
    market: MarketConfig = Field(default_factory=MarketConfig, description="Fundamentals provider.")
    data: DataConfig = Field(default_factory=DataConfig, description="Training-data generation.")
    valuation: ValuationAssumptions = Field(
        default_factory=ValuationAssumptions, description="Finance-engine assumptions (WACC, DCF, bands)."
    )
    export: ExportConfig = Field(default_factory=ExportConfig, description="GGUF export and Ollama registration.")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig, description="Evaluation and benchmarks.")
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig, description="Production monitoring.")


# ---------------------------------------------------------------------------------------- loading


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a JSON or YAML config file into a dict; syntax errors name the file and line."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"Config file not found: {file}")
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() in {".yaml", ".yml"}:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{file}{where}: invalid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{file}, line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be an object of sections, got {type(data).__name__}")
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """Split a command-line override 'section.key=value'; the value is read as JSON when it parses."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"Override '{item}' must look like section.key=value")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted-key overrides set (``{"training.batch_size": 8}``)."""
    result = json.loads(json.dumps(data, default=str))
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = result
        parts = dotted.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"Override '{dotted}': '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return result


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> EquituneConfig:
    """Resolve the configuration: defaults, then ``path`` (or ./finetune_config.json when it exists), then
    ``overrides`` (dotted keys, e.g. from command-line flags). Errors name file, key and allowed values."""
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = DEFAULT_CONFIG_FILE
    data = read_config_file(path) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    if overrides:
        data = apply_overrides(data, overrides)
        source = f"{source} + command line"
    try:
        return EquituneConfig.model_validate(data)
    except ValidationError as exc:
        text = Path(path).read_text(encoding="utf-8") if path is not None else ""
        messages = [_explain(err, source, text) for err in exc.errors()]
        raise ConfigError("Invalid configuration:\n" + "\n".join(f"  - {m}" for m in messages)) from None


def save_config(config: EquituneConfig, path: str | os.PathLike[str]) -> Path:
    """Write the resolved configuration as JSON (atomically), e.g. beside an artefact it produced."""
    return atomic_write_text(path, config_json(config))


def config_json(config: EquituneConfig) -> str:
    """The configuration as pretty JSON text."""
    return json.dumps(config.model_dump(mode="json"), indent=2) + "\n"


# ---------------------------------------------------------------------------------------- errors


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model class that holds the field at ``loc`` (None past dicts and lists)."""
    model: type[BaseModel] = EquituneConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _allowed_range(loc: tuple[str | int, ...]) -> str | None:
    """'0 < value <= 1' style description of a numeric field's bounds, from its metadata."""
    model = _model_at(loc)
    field = model.model_fields.get(str(loc[-1])) if model is not None else None
    if field is None:
        return None
    low = high = ""
    for meta in field.metadata:
        if isinstance(meta, annotated_types.Ge):
            low = f"{meta.ge} <= "
        elif isinstance(meta, annotated_types.Gt):
            low = f"{meta.gt} < "
        elif isinstance(meta, annotated_types.Le):
            high = f" <= {meta.le}"
        elif isinstance(meta, annotated_types.Lt):
            high = f" < {meta.lt}"
    return f"{low}value{high}" if (low or high) else None


def _line_of(text: str, key: str) -> int | None:
    """First line of a config file that mentions ``key`` as a key (JSON or YAML), 1-based."""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith((f'"{key}"', f"{key}:", f"'{key}'")):
            return number
    return None


def _explain(err: Any, source: str, text: str) -> str:
    loc = tuple(err["loc"])
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    line = _line_of(text, str(loc[-1])) if loc and text else None
    where = f"{source}, line {line}" if line else source
    if err["type"] == "extra_forbidden":
        model = _model_at(loc)
        valid = sorted(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"{where}: unknown key '{dotted}'{hint} Valid keys here: {', '.join(valid)}."
    value = err.get("input")
    shown = json.dumps(value, default=str) if not isinstance(value, dict) else "{...}"
    allowed = _allowed_range(loc)
    rng = f" (allowed range: {allowed})" if allowed else ""
    return f"{where}: {dotted} = {shown} is invalid: {err['msg']}{rng}."
