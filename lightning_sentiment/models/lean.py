"""`LeanLightningModule`: a LightningModule without Lightning's avoidable cost per hook call."""

from __future__ import annotations

import inspect
from typing import Any

import pytorch_lightning as pl

STEP_HOOKS = ("training_step", "validation_step", "test_step", "predict_step")


class LeanLightningModule(pl.LightningModule):
    """A LightningModule whose per-hook bookkeeping bypasses `nn.Module.__setattr__`.

    Lightning records the running hook's name on the module around every hook call,
    some 40 times a step. `nn.Module.__setattr__` checks each value against the
    parameters, buffers and submodules (two metaclass `isinstance` calls): ~100 us a
    step, a fifth of Lightning's own cost per step on CPU (README, Performance). A
    string is never a parameter, buffer or module, so a plain attribute set is the same.
    Likewise the step hooks' signatures, which Lightning reads every step, are stored
    once (~35 us a step on CPU, README).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Lightning reads the step hook's signature every step (does it take batch_idx?)
        # with inspect.getfullargspec: ~35 us a step on CPU. A function's signature is fixed,
        # and inspect returns a stored `__signature__` as it is.
        super().__init_subclass__(**kwargs)
        for name in STEP_HOOKS:
            hook = cls.__dict__.get(name)
            # Not decorated hooks: Lightning inspects their `__wrapped__`, and a stored
            # signature would change what inspect.signature says of the wrapper.
            plain = inspect.isfunction(hook) and not hasattr(hook, "__wrapped__")
            if plain and "__signature__" not in hook.__dict__:
                hook.__signature__ = inspect.signature(hook)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)
