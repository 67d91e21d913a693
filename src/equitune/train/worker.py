"""One process of a data-parallel run, started by torchrun (see ``train/distributed.py``).

``python -m equitune.train.worker --job FILE``: read the job (resolved configuration, device kind, backend,
``run_training`` arguments), join the process group, train, and on rank 0 write the result beside the job.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from equitune.errors import EquituneError


def main(argv: Sequence[str] | None = None) -> int:
    """Run this rank's share of the training job; exit status 0 on success, 1 on an equitune error."""
    parser = argparse.ArgumentParser(prog="equitune.train.worker", description=main.__doc__)
    parser.add_argument("--job", type=Path, required=True, help="job file written by launch_training")
    args = parser.parse_args(argv)
    job = json.loads(args.job.read_text(encoding="utf-8"))

    import torch.distributed as dist

    from equitune.config import EquituneConfig
    from equitune.io import atomic_write_json
    from equitune.logging_setup import setup_logging
    from equitune.train.distributed import init_world, result_to_json
    from equitune.train.pipeline import run_training

    config = EquituneConfig.model_validate(job["config"])
    world = init_world(job["backend"], job["device"])
    if world.is_main:
        setup_logging(config.paths.logs)
        logging.getLogger("equitune").info("rank 0 of %d (%s, %s backend)", world.size, world.device, job["backend"])
    else:  # the other ranks report warnings and errors only
        logger = logging.getLogger("equitune")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"[rank {world.rank}] %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    run = job["run"]
    try:
        result = run_training(
            config,
            base_model=run["base_model"],
            data_dir=Path(run["data_dir"]) if run["data_dir"] is not None else None,
            name=run["name"],
            resume=run["resume"],
            continue_training=run["continue_training"],
            new_data=Path(run["new_data"]) if run["new_data"] is not None else None,
            use_qlora=run["use_qlora"],
            four_bit=run["four_bit"],
            progress=bool(run["progress"]) and world.is_main,
            world=world,
        )
        if world.is_main:
            atomic_write_json(Path(job["result"]), result_to_json(result))
        world.wait()
    except EquituneError as exc:
        sys.stderr.write(f"[rank {world.rank}] Error: {exc}\n")
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
