"""The per-step shortcuts past Lightning's bookkeeping keep Lightning's behaviour."""

import contextlib
import functools
import inspect

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.callbacks import EarlyStopping as LightningEarlyStopping
from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint
from pytorch_lightning.core.hooks import move_data_to_device as _move
from pytorch_lightning.profilers import SimpleProfiler

from lightning_sentiment.callbacks import EarlyStopping, ModelCheckpoint
from lightning_sentiment.data import SentimentDataModule
from lightning_sentiment.models import SentimentClassifier
from lightning_sentiment.profilers import NoProfiler
from tests.helpers import quiet_trainer

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
    trainer = quiet_trainer(
        max_epochs=1, limit_train_batches=steps, callbacks=[checkpoint], default_root_dir=tmp_path
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


class _NoBatchIdx(SentimentClassifier):
    def training_step(self, batch):  # Lightning must not pass batch_idx to this one
        return super().training_step(batch, 1)


def _keeps_signature(step):
    @functools.wraps(step)
    def wrapper(*args, **kwargs):
        return step(*args, **kwargs)

    return wrapper


class _Decorated(SentimentClassifier):
    @_keeps_signature
    def training_step(self, batch):  # Lightning unwraps decorated hooks itself
        return super().training_step(batch, 1)


def test_stored_step_signatures_answer_lightnings_question_as_before():
    # Lightning asks each step whether training_step takes batch_idx; the stored
    # signature must give inspect's answer, also for subclasses that drop the argument.
    from pytorch_lightning.utilities.signature_utils import is_param_in_hook_signature

    for cls, takes_idx in ((SentimentClassifier, True), (_NoBatchIdx, False)):
        hook = cls.__dict__["training_step"]
        assert "__signature__" in hook.__dict__
        code = hook.__code__
        assert list(hook.__signature__.parameters) == list(code.co_varnames[: code.co_argcount])
        module = cls(net=NET, optimizer=ADAM)
        assert is_param_in_hook_signature(module.training_step, "batch_idx", min_args=2) is takes_idx
        assert inspect.getfullargspec(module.training_step).args[:2] == ["self", "batch"]
    # a decorated hook keeps what inspect said of it: nothing stored on the wrapper
    hook = _Decorated.__dict__["training_step"]
    assert "__signature__" not in hook.__dict__ and inspect.getfullargspec(hook).varargs == "args"
    assert str(inspect.signature(hook)) == "(self, batch)"
    module = _Decorated(net=NET, optimizer=ADAM)
    assert is_param_in_hook_signature(module.training_step, "batch_idx", min_args=2) is False


def test_batch_transfer_moves_tuples_of_tensors_and_leaves_other_batches_to_lightning(tmp_path, monkeypatch):
    import pytorch_lightning.core.hooks as hooks

    walks = []
    monkeypatch.setattr(hooks, "move_data_to_device", lambda b, d: walks.append(b) or _move(b, d))
    module = SentimentDataModule(data_dir=str(tmp_path))  # the datamodule owns the batch format
    meta = torch.device("meta")  # a real move on a CPU-only machine
    tokens, labels = torch.ones(2, 3, dtype=torch.long), torch.zeros(2)
    moved = module.transfer_batch_to_device((tokens, labels), meta, 0)
    assert type(moved) is tuple and [t.device.type for t in moved] == ["meta", "meta"]
    assert moved[0].shape == (2, 3) and moved[0].dtype == torch.long
    as_list = module.transfer_batch_to_device([tokens], meta, 0)
    assert type(as_list) is list and as_list[0].device == meta
    assert walks == []  # neither went through Lightning's collection walk
    mixed = module.transfer_batch_to_device({"tokens": tokens, "note": "x"}, meta, 0)  # Lightning's path
    assert mixed["tokens"].device == meta and mixed["note"] == "x" and len(walks) == 1


def test_a_step_without_clipping_leaves_gradients_alone():
    module = SentimentClassifier(net=NET, optimizer=ADAM)
    optimizer = module.configure_optimizers()["optimizer"]
    module(torch.ones(2, 3, dtype=torch.long)).sum().backward()
    before = [p.grad.clone() for p in module.parameters() if p.grad is not None]
    module.configure_gradient_clipping(optimizer, None, None)  # no trainer needed: nothing to clip
    after = [p.grad for p in module.parameters() if p.grad is not None]
    assert before and all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_eval_metrics_are_logged_once_an_epoch_and_cover_every_batch(train_cfg, tmp_path, monkeypatch):
    """Logged at the epoch's end, not every step (~2 ms a `self.log` call on CPU), and
    still the accuracy over all the epoch's batches."""
    cfg = train_cfg(["model=mlp"])
    cfg.data.eval_batch_size = 2  # several validation batches
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    model = instantiate(cfg.model, _recursive_=False)
    names = []
    real_log = SentimentClassifier.log

    def counting_log(self, name, *args, **kwargs):
        names.append(name)
        return real_log(self, name, *args, **kwargs)

    monkeypatch.setattr(SentimentClassifier, "log", counting_log)
    (result,) = quiet_trainer(default_root_dir=tmp_path).validate(model, datamodule=datamodule)
    assert len(datamodule.val_dataloader()) >= 3
    assert names.count("val/acc") == 1 and names.count("val/loss") == 1
    model.eval()
    with torch.no_grad():
        pairs = [(model(tokens), labels) for tokens, labels, _ in datamodule.val_dataloader()]
    logits, labels = (torch.cat(t) for t in zip(*pairs, strict=True))
    assert result["val/acc"] == pytest.approx(float(((logits > 0) == (labels > 0.5)).float().mean()))
