"""`python -m helpers.train`: train one mode exactly as the notebooks do (same run, same cache).

    python -m helpers.train --profile demo --mode lora --epochs 1
    torchrun --nproc_per_node 2 -m helpers.train --profile full --mode lora

The run goes through `helpers.course.runs.trained_model`, so it lands in
`outputs/<run name>/models/<mode>/`, resumes an interrupted run of the same settings and
loads a finished one instead of training it again. Under torchrun each process trains on its
shard of every epoch (`helpers.core.distributed`): the global batch is `--batch-size` times
the number of processes, and only rank 0 writes. Errors are one line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from helpers.core import distributed
from helpers.core.runtime import DEVICES, PRECISIONS, RuntimeUnavailable
from helpers.course.profiles import PROFILES
from helpers.model.modes import MODES


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m helpers.train",
        description="Train one mode under the course protocol (as notebooks 04 and 06 do), "
        "or load the finished run with the same settings. Runs unchanged under torchrun "
        "(data-parallel, one process per device).",
    )
    p.add_argument("--profile", default="demo", choices=sorted(PROFILES),
                   help="the course profile: data, model and training settings (default: demo)")
    p.add_argument("--mode", default="lora", choices=MODES,
                   help="what to train: the decoder, LoRA adapters or the full model "
                   "(default: lora)")
    p.add_argument("--epochs", type=int, help="epochs (default: the profile's)")
    p.add_argument("--batch-size", type=int,
                   help="images per step per process; under torchrun the global batch is this "
                   "times the number of processes (default: the profile's)")
    p.add_argument("--device", choices=DEVICES,
                   help="where to train (default: the profile's, usually auto: cuda, mps, cpu); "
                   "under torchrun each process takes the GPU of its LOCAL_RANK")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="autocast precision on CUDA (default: the profile's, usually auto)")
    p.add_argument("--run-name",
                   help="output folder under outputs/ (default: the profile's name, as the "
                   "notebooks use)")
    p.add_argument("--retrain", "--no-resume", dest="retrain", action="store_true",
                   help="start this run over instead of resuming or loading it")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for name in ("epochs", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return _error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    try:
        device = distributed.start_from_env(args.device or PROFILES[args.profile].device)
        return _train(args, device)
    except (ValueError, RuntimeUnavailable, OSError) as err:  # CheckpointError is a ValueError
        return _error(str(err).strip().splitlines()[0] if str(err).strip() else repr(err))
    finally:
        distributed.stop()


def _train(args: argparse.Namespace, device: str) -> int:
    from helpers.core.runtime import get_runtime
    from helpers.course.runs import trained_model
    from helpers.course.session import open_course
    from helpers.inference.loading import load_model

    course = open_course(profile=args.profile, run_name=args.run_name, epochs=args.epochs,
                         batch_size=args.batch_size, device=device, precision=args.precision)
    get_runtime(course.cfg.device, course.cfg.precision)  # an absent device: before any work
    main_rank = distributed.is_main()
    if not main_rank:
        distributed.barrier()  # rank 0 prepares data and the base model once
    manifest = course.manifest
    if main_rank:
        load_model(course.cfg.model)
        distributed.barrier()
    result = trained_model(course.cfg, args.mode, manifest, course.out_name,
                           retrain=args.retrain, progress=main_rank)
    if main_rank:
        print(result.describe())
        last = result.log.iloc[-1]
        scores = {k: float(last[k]) for k in result.log.columns if k.startswith("val_")}
        print("last epoch: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        print(f"best checkpoint: {result.checkpoint}")
    return 0


def _error(message: str) -> int:
    print(f"python -m helpers.train: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
