"""Bad settings fail before any work, in one line that names the key (errors.settings_of and
the explicit checks of the data module, the networks, the module and the callbacks)."""

import pytest
import torch
from hydra.utils import instantiate
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from lightning_sentiment.callbacks import EarlyStopping
from lightning_sentiment.errors import SentimentError, SettingError, find_user_error, settings_of
from lightning_sentiment.hardware import configure_threads
from lightning_sentiment.models import LSTMClassifier, MultiHotMLP, SentimentClassifier
from tests.helpers import make_dm

NET = {"_target_": "lightning_sentiment.models.MultiHotMLP", "vocab_size": 20, "hidden_units": 4}
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.001}
PLATEAU = {
    "_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
    "_partial_": True,
    "mode": "max",
    "factor": 0.3,
    "monitor": "val/acc",
}


def test_torch_and_lightning_argument_errors_become_one_line():
    with pytest.raises(SettingError) as caught, settings_of("model.optimizer"):
        torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=-1)
    assert (
        str(caught.value)
        == "model.optimizer: Invalid learning rate: -1 (check the model.optimizer.* settings)"
    )
    expected = r"^trainer: `max_epochs` must be a non-negative integer"
    with pytest.raises(SettingError, match=expected), settings_of("trainer"):
        instantiate({"_target_": "pytorch_lightning.Trainer", "max_epochs": -2})


def test_an_unknown_target_names_it():
    with pytest.raises(SettingError) as caught, settings_of("model.optimizer"):
        instantiate({"_target_": "torch.optim.Adamm", "_partial_": True})
    assert str(caught.value).startswith("model.optimizer: cannot import torch.optim.Adamm:")


def test_our_own_errors_pass_through_and_bugs_keep_their_traceback():
    with pytest.raises(SentimentError, match="^data.padding=x is not allowed") as caught, settings_of("data"):
        raise SettingError("data.padding=x is not allowed: use pre, post")
    assert type(caught.value) is SettingError
    # a ValueError raised by our own code is a bug, not a setting: it stays what it is
    with pytest.raises(ValueError, match="invalid literal") as caught, settings_of("model"):
        int("twelve")
    assert find_user_error(caught.value) is None
    with pytest.raises(MisconfigurationException), settings_of("trainer"):
        raise MisconfigurationException("raised here, not in Lightning")  # ours too: a bug
    with pytest.raises(KeyError), settings_of("model"):
        {}["x"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "data.batch_size=0 must be an integer >= 1"),
        ({"eval_batch_size": -1}, "data.eval_batch_size=-1 must be an integer >= 1"),
        ({"batch_size": 2.5}, "data.batch_size=2.5 must be an integer >= 1"),
        ({"num_workers": -1}, "data.num_workers=-1 must be an integer >= 0"),
        ({"ngram_min_count": 0}, "data.ngram_min_count=0 must be an integer >= 1"),
    ],
)
def test_bad_batching_settings(tmp_path, kwargs, message):
    with pytest.raises(SettingError) as caught:
        make_dm(tmp_path, **kwargs)
    assert str(caught.value) == message
    make_dm(tmp_path, **{key: 1 for key in kwargs})  # the smallest allowed value is fine


@pytest.mark.parametrize("key", ["lowercase", "strip_html", "cache", "bucket", "distinct", "pin_memory"])
def test_switches_take_true_or_false_only(tmp_path, key):
    with pytest.raises(SettingError, match=f"^data.{key}=maybe must be true or false$"):
        make_dm(tmp_path, **{key: "maybe"})  # a string, which Python would read as true
    make_dm(tmp_path, **{key: False})


@pytest.mark.parametrize("threads", [0, -2, "abc", 1.5])
def test_bad_thread_counts(threads):
    with pytest.raises(SettingError, match=f"^threads={threads} must be an integer >= 1, or null"):
        configure_threads(threads)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_dim": 0}, "model.net.hidden_dim=0 must be an integer >= 1"),
        ({"embed_dim": -3}, "model.net.embed_dim=-3 must be an integer >= 1"),
        ({"num_layers": 0}, "model.net.num_layers=0 must be an integer >= 1"),
        ({"dense_dim": 0}, "model.net.dense_dim=0 must be an integer >= 1"),
        ({"dropout": 1.5}, r"model.net.dropout=1.5 must lie in \[0, 1\)"),
        ({"output_dropout": -0.1}, r"model.net.output_dropout=-0.1 must lie in \[0, 1\)"),
        ({"word_dropout": 1.0}, r"model.net.word_dropout=1.0 must lie in \[0, 1\)"),
    ],
)
def test_bad_lstm_sizes_and_rates(kwargs, message):
    with pytest.raises(SettingError, match=f"^{message}$"):
        LSTMClassifier(vocab_size=20, **kwargs)


def test_bad_mlp_sizes_and_rates():
    with pytest.raises(SettingError, match=r"^model.net.hidden_units=0 must be an integer >= 1$"):
        MultiHotMLP(vocab_size=20, hidden_units=0)
    with pytest.raises(SettingError, match=r"^model.net.hidden_dims=-4 must be an integer >= 1$"):
        MultiHotMLP(vocab_size=20, hidden_dims=[8, -4])
    with pytest.raises(SettingError, match=r"^model.net.dropout=1 must lie in \[0, 1\)$"):
        MultiHotMLP(vocab_size=20, dropout=1)
    assert MultiHotMLP(vocab_size=20, hidden_dims=[8, 1], dropout=0.0)(torch.tensor([[1, 2]])).shape == (1,)


@pytest.mark.parametrize(
    ("optimizer", "scheduler", "message"),
    [
        ({**ADAM, "lr": -1}, PLATEAU, "model.optimizer: Invalid learning rate: -1"),
        ({**ADAM, "betas": [0.9, 1.5]}, PLATEAU, "model.optimizer: Invalid beta parameter at index 1: 1.5"),
        (ADAM, {**PLATEAU, "factor": 2}, r"model.scheduler: Factor should be < 1.0."),
        (ADAM, {**PLATEAU, "mode": "up"}, "model.scheduler: mode up is unknown!"),
    ],
)
def test_the_module_checks_its_optimizer_and_scheduler_when_built(optimizer, scheduler, message):
    """At construction, on a stand-in parameter: not after the data setup, when Lightning
    calls configure_optimizers."""
    with pytest.raises(SettingError, match=f"^{message}"):
        SentimentClassifier(net=NET, optimizer=optimizer, scheduler=scheduler)


def test_the_stand_in_leaves_the_module_as_configured():
    torch.manual_seed(0)
    module = SentimentClassifier(net=NET, optimizer={**ADAM, "lr": 0.01}, scheduler=PLATEAU)
    torch.manual_seed(0)
    same = instantiate(NET)
    for (name, p), q in zip(module.net.named_parameters(), same.parameters(), strict=True):
        assert torch.equal(p, q), name  # no random draw in between: seeds give the same weights
    config = module.configure_optimizers()
    assert config["optimizer"].param_groups[0]["lr"] == 0.01
    assert len(config["optimizer"].param_groups[0]["params"]) == len(list(module.parameters()))
    assert config["lr_scheduler"]["monitor"] == "val/acc"


def test_negative_early_stopping_patience():
    with pytest.raises(SettingError, match=r"^callbacks.early_stopping.patience=-1 must be an integer >= 0$"):
        EarlyStopping(monitor="val/acc", patience=-1)
    assert EarlyStopping(monitor="val/acc", patience=0).patience == 0
