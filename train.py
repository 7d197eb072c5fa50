"""Train and test an IMDB sentiment classifier.

    python train.py                              # default model (LSTM)
    python train.py model=bilstm trainer=gpu
    python train.py -m model=lstm,bilstm,mlp     # a sweep
"""

import sys

import hydra
from omegaconf import DictConfig

from lightning_sentiment import SentimentError
from lightning_sentiment.pipeline import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except SentimentError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
