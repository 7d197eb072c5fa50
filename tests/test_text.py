import numpy as np
import pytest

from lightning_sentiment.data.text import KERAS_FILTERS, Tokenizer, Vocabulary, pad_sequences
from lightning_sentiment.errors import SettingError


def test_tokenizer_keras_semantics():
    tok = Tokenizer()
    text = "This movie's GREAT!<br /><br />10/10, would re-watch... (really)"
    assert tok.tokenize(text) == ["this", "movie's", "great", "10", "10", "would", "re", "watch", "really"]


def test_tokenizer_options():
    assert Tokenizer(lowercase=False).tokenize("Good<br />Bad") == ["Good", "Bad"]
    assert Tokenizer(strip_html=False).tokenize("a<br />b") == ["a", "br", "b"]
    assert Tokenizer(filters="!").tokenize("a,b! c") == ["a,b", "c"]


def test_split_chars_become_tokens_of_their_own():
    tok = Tokenizer(split_chars="!?")
    text = "Great!!<br />Really? 10/10!"
    assert tok.tokenize(text) == ["great", "!", "!", "really", "?", "10", "10", "!"]
    assert [w.decode() for w in tok.tokenize_corpus([text])[0]] == tok.tokenize(text)
    assert Tokenizer(filters="", split_chars="!").tokenize("a!b,c") == ["a", "!", "b,c"]  # filters or not
    # only set ones join the settings: the default's cache key and checkpoints stay as they were
    assert "split_chars" not in Tokenizer().settings() and tok.settings()["split_chars"] == "!?"
    assert Tokenizer(**tok.settings()).tokenize(text) == tok.tokenize(text)
    with pytest.raises(SettingError, match="data.split_chars=' ' holds whitespace"):
        Tokenizer(split_chars=" ")
    with pytest.raises(SettingError, match="^data.filters='é' must be a string of ASCII characters$"):
        Tokenizer(filters="é")
    with pytest.raises(SettingError, match="^data.filters=5 must be a string of ASCII characters$"):
        Tokenizer(filters=5)
    # null filters nothing, as Keras' filters="" does (it used to fail with a TypeError)
    assert Tokenizer(filters=None).tokenize("a,b!") == Tokenizer(filters="").tokenize("a,b!") == ["a,b!"]


def test_corpus_tokenization_equals_single_review():
    tok = Tokenizer()
    texts = ["Great film!", "", "Ünïcode wörds, ok?<br />Fine", "sep\x01inside"]
    corpus = tok.tokenize_corpus(texts)
    assert [[w.decode() for w in toks] for toks in corpus] == [tok.tokenize(t) for t in texts]
    assert corpus[1] == [] and corpus[2][0].decode() == "ünïcode"


def _reference_tokens(text: str) -> list[str]:
    """Keras' order, on str: lowercase, <br /> to a space, filters to spaces, split."""
    text = text.lower().replace("<br />", " ").replace("<br/>", " ").replace("<br>", " ")
    return text.translate(str.maketrans(KERAS_FILTERS, " " * len(KERAS_FILTERS))).split(" ")


@pytest.mark.parametrize(
    "text",
    [
        "PLAIN ASCII Review<BR />With A Break",
        "Mixed ÉTÉ and ASCII CAPS, Straße",
        "Greek ΟΔΥΣΣΕΥΣ. Kelvin \u212a and İstanbul",
        "ÀÉÎÕÜ<Br/>çà",
    ],
)
def test_lowercasing_on_bytes_equals_str_lower(text):
    # ASCII letters are lowered on bytes, the rest by str.lower: the same tokens as
    # lowering the whole str first, in one review and across a corpus.
    expected = [w for w in _reference_tokens(text) if w]
    tok = Tokenizer()
    assert tok.tokenize(text) == expected
    corpus = tok.tokenize_corpus(["ASCII ONLY", text])
    assert [w.decode() for w in corpus[1]] == expected


def test_conf_filters_equal_keras_defaults():
    from omegaconf import OmegaConf

    cfg = OmegaConf.load("conf/data/imdb.yaml")
    assert cfg.filters == KERAS_FILTERS


SEQS = [np.array([1, 2, 3]), np.array([4, 5, 6, 7, 8]), np.array([9])]


@pytest.mark.parametrize(
    ("padding", "truncating", "expected"),
    [
        ("pre", "pre", [[0, 1, 2, 3], [5, 6, 7, 8], [0, 0, 0, 9]]),
        ("post", "pre", [[1, 2, 3, 0], [5, 6, 7, 8], [9, 0, 0, 0]]),
        ("pre", "post", [[0, 1, 2, 3], [4, 5, 6, 7], [0, 0, 0, 9]]),
        ("post", "post", [[1, 2, 3, 0], [4, 5, 6, 7], [9, 0, 0, 0]]),
    ],
)
def test_pad_sequences_like_keras(padding, truncating, expected):
    out = pad_sequences(SEQS, maxlen=4, padding=padding, truncating=truncating)
    assert out.tolist() == expected and out.dtype == np.int64


def test_pad_sequences_default_length_and_empty():
    assert pad_sequences([np.array([1]), np.array([], dtype=np.int64)]).tolist() == [[1], [0]]
    with pytest.raises(ValueError, match="pre"):
        pad_sequences(SEQS, padding="middle")


def test_vocabulary_oov_and_drop():
    with_oov = Vocabulary(["good", "bad"], "<unk>")
    assert with_oov.words == ["<pad>", "<unk>", "good", "bad"]
    assert with_oov.encode(["good", "meh", "bad"]).tolist() == [2, 1, 3]
    without = Vocabulary(["good", "bad"], None)
    assert without.words == ["<pad>", "good", "bad"]
    assert without.encode(["good", "meh", "bad"]).tolist() == [1, 2]
    assert Vocabulary.from_state_dict(with_oov.state_dict()) == with_oov
