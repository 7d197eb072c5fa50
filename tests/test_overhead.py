"""The per-step shortcuts past Lightning's bookkeeping keep Lightning's behaviour."""

import contextlib

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.callbacks import EarlyStopping as LightningEarlyStopping
from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint
from pytorch_lightning.profilers import SimpleProfiler

from lightning_sentiment.callbacks import EarlyStopping, ModelCheckpoint
from lightning_sentiment.models import SentimentClassifier
from lightning_sentiment.profilers import NoProfiler

NET = {"_target_": "lightning_sentiment.models.MultiHotMLP", "vocab_size": 20, "hidden_dims": [4]}
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}


def test_hook_name_skips_module_setattr_but_modules_still_register(monkeypatch):
    module, extra = SentimentClassifier(net=NET, optimizer=ADAM), torch.nn.Linear(2, 2)
    seen = []
    original = torch.nn.Module.__setattr__

    def spy(self, name, value):
        seen.append(name)
        original(self, name, value)

    monkeypatch.setattr(torch.nn.Module, "__setattr__", spy)
    module._current_fx_name = "training_step"
    module.extra = extra
    assert module._current_fx_name == "training_step" and "_current_fx_name" not in seen
    assert seen == ["extra"] and dict(module.named_children())["extra"] is extra


def test_callbacks_keep_lightnings_state_keys():
    # Checkpoints store callback state under these keys: resuming old runs needs them equal.
    kwargs = {"monitor": "val/acc", "mode": "max"}
    assert ModelCheckpoint(**kwargs).state_key == LightningModelCheckpoint(**kwargs).state_key
    assert EarlyStopping(**kwargs).state_key == LightningEarlyStopping(**kwargs).state_key
    assert ModelCheckpoint(monitor=None).state_key != ModelCheckpoint(**kwargs).state_key


class _Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(tmp_path, checkpoint: ModelCheckpoint, steps: int = 4) -> None:
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[checkpoint],
        default_root_dir=tmp_path,
    )
    trainer.fit(_Tiny(), train_dataloaders=torch.utils.data.DataLoader(torch.randn(steps, 2), batch_size=1))


def test_checkpoint_every_n_train_steps_still_saves_mid_epoch(tmp_path):
    _fit(tmp_path, ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1, monitor=None))
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt"]


def test_epoch_end_checkpoint_skips_the_per_batch_hook(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(LightningModelCheckpoint, "on_train_batch_end", lambda *a: calls.append(a))
    _fit(tmp_path, ModelCheckpoint(dirpath=tmp_path, monitor=None))
    assert calls == [] and sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["epoch=0-step=4.ckpt"]


def test_default_profiler_records_nothing_and_overrides_still_profile(train_cfg):
    trainer = instantiate(train_cfg([]).trainer, accelerator="cpu")
    assert isinstance(trainer.profiler, NoProfiler)
    assert isinstance(trainer.profiler.profile("[Callback]x.on_train_batch_end"), contextlib.nullcontext)
    trainer = instantiate(train_cfg(["trainer.profiler=simple"]).trainer, accelerator="cpu")
    assert isinstance(trainer.profiler, SimpleProfiler)
