"""A stand-in for a user's tokenizer and the one-line error check, shared by the file-task and audit tests."""

from __future__ import annotations

import string


def char_tokenizer(chars: str = string.printable[:95]):
    """One token per character of ``chars`` plus <pad>, <bos>, <eos>; <bos> prepended."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<bos>", "<eos>", *chars])}
    core = Tokenizer(models.WordLevel(vocab))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def one_line(exc) -> str:
    """The message of a ``pytest.raises`` result, which must be one line."""
    assert "\n" not in str(exc.value)
    return str(exc.value)
