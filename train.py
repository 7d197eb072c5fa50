"""Train and test an IMDB sentiment classifier.

python train.py                              # default model (LSTM)
python train.py model=bilstm trainer=gpu
python train.py -m model=lstm,bilstm,mlp     # a sweep
"""

import sys

import hydra
from omegaconf import DictConfig

from lightning_sentiment.errors import find_user_error
from lightning_sentiment.pipeline import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except Exception as err:
        user_error = find_user_error(err)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)  # one line, no traceback
        sys.exit(2)
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
