"""The export stage as one call: merge, GGUF files, llama.cpp verification, Modelfile, registry, ``ollama create``.

``run_export`` takes a finished training run (``finetuned_models/<run>/adapter``) and leaves, in
``finetuned_models/<run>/export/<tag>/``:

- ``merged/``: the adapter merged into the float32 base (a Hugging Face folder, the source of every GGUF);
- ``<run>-<type>.gguf`` for each of ``export.formats`` (f16 by default; q8_0, q4_K_M, bf16, f32 on request);
- ``adapter.gguf`` (the LoRA adapter alone, for ``FROM <base>`` + ``ADAPTER``) and, to verify it, ``base-f16.gguf``;
- ``verification.json``: llama.cpp against PyTorch on fixed prompts (tokenisation and greedy tokens), per file;
- ``Modelfile``: FROM, ADAPTER, TEMPLATE, PARAMETER stop/num_ctx/sampling, SYSTEM, LICENSE.

The version is recorded in the model registry; with ``create`` it is registered in Ollama through the official
client, or, when Ollama is not reachable, the exact ``ollama create`` command is returned for later.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from equitune.config import EquituneConfig
from equitune.errors import EquituneError

log = logging.getLogger("equitune.export")


@dataclass
class ExportResult:
    """What ``run_export`` wrote and did."""

    name_tag: str
    export_dir: Path
    modelfile: Path
    gguf_files: list[Path]
    adapter_gguf: Path | None
    verification: dict[str, Any]
    created: bool = False
    host: str | None = None
    instructions: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)


def _config_hash(config: EquituneConfig) -> str:
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def run_export(
    config: EquituneConfig,
    *,
    run_name: str | None = None,
    model_name: str | None = None,
    formats: list[str] | None = None,
    mode: str | None = None,
    verify: bool | None = None,
    create: bool = False,
    host: str | None = None,
    progress: bool = True,
) -> ExportResult:
    """Export the training run ``run_name`` (default ``training.output_name``) as Ollama model ``model_name``
    (default ``export.model_name``; ``name:tag`` picks the version, else the registry's next ``vN``)."""
    from equitune.export.adapter_gguf import write_adapter_gguf
    from equitune.export.gguf import convert_to_gguf, converter_dir, quantize_gguf
    from equitune.export.merge import base_model_name, check_adapter_dir, merge_adapter, save_base_model
    from equitune.export.modelfile import SamplingDefaults, TokenizerInfo, build_modelfile_spec, write_modelfile
    from equitune.export.ollama_api import resolve_host, validate_model_name
    from equitune.export.verify import load_reference, min_agreement_for, verify_gguf
    from equitune.registry import GGUFFile, ModelRegistry, ModelVersion, sha256_file, split_name_tag
    from equitune.train.base_model import resolve_base_model
    from equitune.train.pipeline import output_dir

    settings = config.export
    formats = list(formats or settings.formats)
    mode = mode or settings.mode
    verify = settings.verify if verify is None else verify
    if mode not in ("merged", "adapter"):
        raise EquituneError(f"export mode must be 'merged' or 'adapter', not {mode!r}")
    unknown = [f for f in formats if f not in ("f16", "q8_0", "q4_K_M", "bf16", "f32")]
    if unknown or not formats:
        raise EquituneError(f"export formats {unknown or formats}: choose from f16, q8_0, q4_K_M, bf16, f32")

    # -- what to export, and under which name (checked before any work)
    name, tag = split_name_tag(validate_model_name(model_name or settings.model_name))
    run_dir = output_dir(config, run_name)
    adapter_dir = check_adapter_dir(run_dir / "adapter")
    registry = ModelRegistry(config.paths.registry)
    tag = tag or registry.next_tag(name)
    name_tag = f"{name}:{tag}"
    validate_model_name(name_tag)
    report_file = run_dir / "training_report.json"
    training = json.loads(report_file.read_text(encoding="utf-8")) if report_file.is_file() else {}
    base_name = training.get("base_model") or base_model_name(adapter_dir)
    resolved = resolve_base_model(base_name)
    converter_dir()  # fail now, not after the merge, when the converter is not installed
    export_dir = run_dir / "export" / tag
    if export_dir.exists():
        shutil.rmtree(export_dir)
    export_dir.mkdir(parents=True)
    stem = run_dir.name
    timings: dict[str, float] = {}

    def timed(label: str, started: float) -> None:
        timings[label] = round(time.perf_counter() - started, 2)
        log.info("%s: %.1f s", label, timings[label])

    # -- merge and convert
    started = time.perf_counter()
    merged = merge_adapter(adapter_dir, resolved, export_dir / "merged")
    timed("merge", started)
    written: dict[str, Path] = {}
    need_f16 = "f16" in formats or "q4_K_M" in formats or mode == "adapter"
    for fmt in (["f16"] if need_f16 else []) + [f for f in formats if f not in ("f16", "q4_K_M")]:
        started = time.perf_counter()
        written[fmt] = convert_to_gguf(merged, export_dir / f"{stem}-{fmt}.gguf", fmt)
        timed(f"convert {fmt}", started)
    if "q4_K_M" in formats:
        started = time.perf_counter()
        written["q4_K_M"] = quantize_gguf(written["f16"], export_dir / f"{stem}-q4_K_M.gguf", "q4_K_M")
        timed("quantize q4_K_M", started)
    adapter_gguf = base_gguf = None
    if settings.adapter_gguf or mode == "adapter":
        started = time.perf_counter()
        adapter_gguf = write_adapter_gguf(adapter_dir, merged, export_dir / "adapter.gguf")
        timed("adapter gguf", started)

    # -- verify with llama.cpp against the merged model in PyTorch
    verification: dict[str, Any] = {}
    if verify:
        reference, tokenizer = load_reference(merged)
        for fmt, path in written.items():
            started = time.perf_counter()
            required = fmt in ("f16", "bf16", "f32")
            report = verify_gguf(
                path, reference, tokenizer, min_agreement=min_agreement_for(fmt), raise_on_failure=required
            )
            verification[path.name] = report.to_dict()
            timed(f"verify {fmt}", started)
            log.info("%s: %s", path.name, report.summary())
        if adapter_gguf is not None:
            started = time.perf_counter()
            base_hf = save_base_model(resolved, export_dir / "base-hf", tokenizer=tokenizer)
            base_gguf = convert_to_gguf(base_hf, export_dir / "base-f16.gguf", "f16")
            shutil.rmtree(base_hf, ignore_errors=True)
            report = verify_gguf(base_gguf, reference, tokenizer, lora_path=adapter_gguf)
            verification[f"{base_gguf.name} + {adapter_gguf.name}"] = report.to_dict()
            timed("verify adapter", started)
            log.info("base + adapter: %s", report.summary())
        del reference
        (export_dir / "verification.json").write_text(json.dumps(verification, indent=2) + "\n", encoding="utf-8")
    if "f16" not in formats and "f16" in written:  # only needed as a source; keep what was asked for
        written.pop("f16").unlink()

    # -- Modelfile
    info = TokenizerInfo.from_folder(adapter_dir)
    sampling = SamplingDefaults(
        temperature=settings.temperature,
        top_p=settings.top_p,
        repeat_penalty=settings.repeat_penalty,
        num_predict=settings.num_predict,
    )
    if mode == "merged":
        first = formats[0]
        from_, adapter_ref = f"./{written[first].name}", None
    else:
        assert adapter_gguf is not None
        # FROM the base the user already runs: the Ollama model itself, else the base GGUF file
        if resolved.route == "ollama":
            from_ = resolved.name
        else:
            if base_gguf is None:
                base_hf = save_base_model(resolved, export_dir / "base-hf")
                base_gguf = convert_to_gguf(base_hf, export_dir / "base-f16.gguf", "f16")
                shutil.rmtree(base_hf, ignore_errors=True)
            from_ = f"./{base_gguf.name}"
        adapter_ref = f"./{adapter_gguf.name}"
    spec = build_modelfile_spec(
        info,
        from_=from_,
        adapter=adapter_ref,
        license=resolved.license,
        num_ctx=settings.num_ctx,
        sampling=sampling,
        header=f"{name_tag}: {stem} fine-tuned from {resolved.name} by equitune",
    )
    modelfile = write_modelfile(spec, export_dir)

    # -- registry
    files = [GGUFFile.from_path(p, "merged", fmt) for fmt, p in written.items()]
    if adapter_gguf is not None:
        files.append(GGUFFile.from_path(adapter_gguf, "adapter", "f32"))
    if base_gguf is not None:
        files.append(GGUFFile.from_path(base_gguf, "base", "f16"))
    metrics = {
        k: training.get(k)
        for k in ("steps", "tokens", "tokens_per_s", "val_loss_before", "val_loss_after", "best_val_loss")
        if k in training
    }
    version = registry.register(
        ModelVersion(
            name=name,
            tag=tag,
            base_model=resolved.name,
            adapter_path=str((adapter_dir / "adapter_model.safetensors").resolve()),
            adapter_sha256=sha256_file(adapter_dir / "adapter_model.safetensors"),
            gguf_files=tuple(files),
            modelfile_path=str(modelfile.resolve()),
            config_hash=_config_hash(config),
            training_metrics=metrics,
        )
    )
    result = ExportResult(
        name_tag=version.name_tag,
        export_dir=export_dir,
        modelfile=modelfile,
        gguf_files=list(written.values()),
        adapter_gguf=adapter_gguf,
        verification=verification,
        timings_s=timings,
    )
    if create:
        _create_in_ollama(result, spec, resolve_host(host or settings.ollama_host), registry, progress)
    return result


def _create_in_ollama(result: ExportResult, spec: Any, host: str, registry: Any, progress: bool) -> None:
    from equitune.export.ollama_api import (
        OllamaUnreachable,
        create_from_modelfile,
        is_reachable,
        offline_instructions,
        rich_progress,
    )

    result.host = host
    if not is_reachable(host):
        result.instructions = offline_instructions(result.name_tag, result.modelfile)
        log.warning("Ollama is not reachable at %s; to create the model later: %s", host, result.instructions)
        return
    try:
        if progress:
            with rich_progress() as callback:
                create_from_modelfile(result.name_tag, spec, result.export_dir, host, progress=callback)
        else:
            create_from_modelfile(result.name_tag, spec, result.export_dir, host)
    except OllamaUnreachable:
        result.instructions = offline_instructions(result.name_tag, result.modelfile)
        log.warning("Ollama went away at %s; to create the model later: %s", host, result.instructions)
        return
    registry.record_ollama(result.name_tag, host, created=True)
    result.created = True
    log.info("created %s in Ollama at %s", result.name_tag, host)
