"""Train and test an IMDB sentiment classifier.

python train.py                              # default model (LSTM)
python train.py model=bilstm trainer=gpu
python train.py -m model=lstm,bilstm,mlp     # a sweep
"""

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lightning_sentiment.memory import configure_cpu_memory

configure_cpu_memory()  # before torch is imported (lightning_sentiment.memory says why)

from lightning_sentiment.atomic import atomic_write_json  # noqa: E402
from lightning_sentiment.errors import find_user_error, first_line  # noqa: E402
from lightning_sentiment.pipeline import train  # noqa: E402

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except Exception as err:
        user_error = find_user_error(err)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # One failing job must not kill the sweep: record it and go on.
            if user_error is None:
                log.exception("Job failed")  # a bug: the traceback goes to the job's log
            else:
                log.error("Job failed: %s", user_error)
            failed = {"status": "failed", "error": first_line(user_error or err)}
            atomic_write_json(Path(cfg.paths.output_dir) / "metrics.json", failed)
            return float("nan")
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)  # one line, no traceback
        sys.exit(2)
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
