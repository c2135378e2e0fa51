"""Plain PyTorch training for the pruning workflows: a loop that fine-tunes pruned models safely.

The loop trains through torch.nn.utils.prune's reparametrisation, so a pruned weight's
``weight_orig`` receives gradients only where ``weight_mask`` is one and the weights the forward
pass sees stay exactly zero where the mask is zero, whatever the optimizer does.

A non-finite loss stops training with :class:`TrainingDiverged`; the model is first restored to
its last good checkpoint (taken before the first step, after every epoch and after every step at
which ``on_step`` changed the model), which is also saved to ``checkpoint`` when a path is given.
"""

import copy
import math
from pathlib import Path

import torch
from torch.nn import functional as F

from .pruning import prunable_parameters

__all__ = ["TrainingDiverged", "train", "evaluate", "l1_penalty"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the model holds its last good checkpoint."""


def evaluate(model, dataset, *, batch_size=512):
    """Return the top-1 accuracy (0 to 1) of ``model`` on a ``TensorDataset`` of (x, label)."""
    x_all, y_all = dataset.tensors
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(y_all), batch_size):
            logits = model(x_all[start:start + batch_size])
            correct += int((logits.argmax(dim=1) == y_all[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / len(y_all) if len(y_all) else float("nan")


def l1_penalty(model):
    """Sum of |w| over the weights hwprune prunes (as the forward pass sees them)."""
    total = 0.0
    for _, module, pname in prunable_parameters(model):
        total = total + getattr(module, pname).abs().sum()
    return total


def _check_positive(name, value, kind=int):
    ok = (isinstance(value, kind) or (kind is float and isinstance(value, int))) and \
        not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        noun = "integer" if kind is int else "number"
        raise ValueError(f"{name} must be a positive {noun}, not {value!r}")


def train(model, dataset, *, epochs, lr=1e-3, batch_size=32, seed=0, l1=0.0, weight_decay=0.0,
          act_l1=0.0, on_step=None, val=None, checkpoint=None, loss_fn=None, progress=False,
          desc="train"):
    """Train ``model`` in place with Adam on a ``TensorDataset`` of (x, label).

    Parameters
    ----------
    epochs, batch_size : int
        Passes over ``dataset`` and examples per step; batches are shuffled with ``seed``.
    lr, weight_decay : float
        Adam's learning rate and (L2) weight decay.
    l1 : float
        L1 regularisation strength λ: the loss is ``cross_entropy + λ·Σ|w|`` over the prunable
        weights (:func:`hwprune.prunable_parameters`).
    act_l1 : float
        Activation sparsity strength μ: adds ``μ`` times the mean over the batch of ``Σ|a|``
        over the outputs of every ``nn.ReLU`` (more of them exactly zero: the network engine
        skips zero activations).
    on_step : callable, optional
        Called as ``on_step(step)`` before every optimizer step (steps count from 0 over all
        epochs). Return True when the call changed the model (a new mask, say): the model is then
        checkpointed again. :class:`hwprune.schedules.GradualPruner` is such a callable.
    val : TensorDataset, optional
        Evaluated after every epoch (shown on the progress bar and in the history).
    checkpoint : str or Path, optional
        Where to also save the last good checkpoint (``torch.save`` of the state dict).
    loss_fn : callable, optional
        ``loss_fn(logits, labels)``; default cross-entropy.
    progress : bool
        Show a tqdm progress bar over the epochs.

    Returns
    -------
    list of dict
        One entry per epoch: ``epoch``, mean ``loss`` and, with ``val``, ``val_accuracy``.

    Raises
    ------
    TrainingDiverged
        The loss became NaN or infinite; the model was restored to its last good checkpoint.
    """
    _check_positive("epochs", epochs)
    _check_positive("batch_size", batch_size)
    _check_positive("lr", lr, float)
    for name, value in (("l1", l1), ("act_l1", act_l1)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative number, not {value!r}")
    acts = []
    hooks = [m.register_forward_hook(lambda mod, args, out: acts.append(out))
             for m in model.modules() if isinstance(m, torch.nn.ReLU)] if act_l1 else []
    try:
        return _train(model, dataset, epochs, lr, batch_size, seed, l1, weight_decay, act_l1,
                      acts, on_step, val, checkpoint, loss_fn, progress, desc)
    finally:
        for h in hooks:
            h.remove()


def _train(model, dataset, epochs, lr, batch_size, seed, l1, weight_decay, act_l1, acts,
           on_step, val, checkpoint, loss_fn, progress, desc):
    loss_fn = loss_fn or F.cross_entropy
    x_all, y_all = dataset.tensors
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    good = {}

    def save(where):
        good["state"] = copy.deepcopy(model.state_dict())
        good["where"] = where
        if checkpoint is not None:
            Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
            torch.save(good["state"], checkpoint)

    save("before training")
    model.train()
    history = []
    epoch_iter = range(1, epochs + 1)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = epoch_iter = tqdm(epoch_iter, desc=desc, unit="epoch", leave=False)
    step = 0
    for epoch in epoch_iter:
        order = torch.randperm(len(y_all), generator=generator)
        total, count = 0.0, 0
        for start in range(0, len(order), batch_size):
            if on_step is not None and on_step(step):
                save(f"after the model changed at step {step}")
            idx = order[start:start + batch_size]
            acts.clear()
            logits = model(x_all[idx])
            loss = loss_fn(logits, y_all[idx])
            if l1:
                loss = loss + l1 * l1_penalty(model)
            if act_l1:
                loss = loss + act_l1 * sum(a.abs().sum() for a in acts) / len(idx)
            if not torch.isfinite(loss):
                model.load_state_dict(good["state"])
                saved = f", saved at {checkpoint}" if checkpoint is not None else ""
                if bar is not None:
                    bar.close()
                raise TrainingDiverged(
                    f"training stopped: the loss is {loss.item()} at epoch {epoch}, step {step}; "
                    f"the model was restored to its last good checkpoint ({good['where']}"
                    f"{saved})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            count += len(idx)
            step += 1
        entry = {"epoch": epoch, "loss": total / count}
        if val is not None:
            entry["val_accuracy"] = evaluate(model, val)
        history.append(entry)
        save(f"end of epoch {epoch}")
        if bar is not None:
            bar.set_postfix({k: f"{v:.4f}" for k, v in entry.items() if k != "epoch"})
    return history
