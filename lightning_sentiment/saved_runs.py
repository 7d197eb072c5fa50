"""What `train(cfg)` takes from a saved run: `ckpt_path=last`, a checkpoint to evaluate with
its own vocabulary and network, and the check that a resumed run builds the same vocabulary."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from lightning_sentiment.checkpointing import DATA_STATE_KEY, load_checkpoint
from lightning_sentiment.data import SentimentDataModule, Vocabulary
from lightning_sentiment.errors import SentimentError
from lightning_sentiment.models import SentimentClassifier


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """`ckpt_path=last`: this run dir's last checkpoint (resume in place with hydra.run.dir=...)."""
    if ckpt_path != "last":
        return ckpt_path
    last = output_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise SentimentError(
            f"ckpt_path=last but {last} does not exist: set hydra.run.dir to the run to resume"
        )
    return str(last)


def from_checkpoint(cfg: DictConfig, ckpt_path: str) -> tuple[SentimentDataModule, SentimentClassifier]:
    """Evaluation: the checkpoint's own network, vocabulary and preprocessing, not the config's."""
    ckpt = load_checkpoint(ckpt_path)
    state = ckpt[DATA_STATE_KEY]
    vocab = Vocabulary.from_state_dict(state["vocab"])
    datamodule = instantiate(
        cfg.data, **state["preprocessing"], vocab_size=len(vocab), oov_token=vocab.oov_token
    )
    datamodule.vocab = vocab
    hp = ckpt["hyper_parameters"]
    model = SentimentClassifier(
        **{k: hp[k] for k in ("net", "optimizer", "scheduler", "loss", "label_smoothing") if k in hp}
    )
    return datamodule, model


def check_resumable(datamodule: SentimentDataModule, ckpt_path: str) -> None:
    """Refuse, in one line, to resume a checkpoint trained on another vocabulary."""
    theirs = Vocabulary.from_state_dict(load_checkpoint(ckpt_path)[DATA_STATE_KEY]["vocab"])
    datamodule.setup("fit")
    if theirs != datamodule.vocab:
        raise SentimentError(
            f"checkpoint {ckpt_path} was trained with another vocabulary ({len(theirs)} ids; this run "
            f"builds {len(datamodule.vocab)}): resume with the data settings it was trained with"
        )
