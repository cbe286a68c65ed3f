"""The text tokenizer: Qwen special tokens, chat template with media placeholders, streaming detokenization."""

import pytest

from cosmos3.tokenizers import (CHATML_TEMPLATE, QWEN_SPECIAL_TOKENS, IncrementalDecoder, TextTokenizer,
                                byte_level_tokenizer)


@pytest.fixture(scope="module")
def tok():
    return byte_level_tokenizer()


def test_special_tokens_follow_qwen_order(tok):
    # Qwen3: <|endoftext|> 151643, <|im_end|> 151645, <|vision_start|> 151652, image 151655, video 151656.
    base = tok.token_id("<|endoftext|>")
    assert [tok.token_id(t) - base for t, _ in QWEN_SPECIAL_TOKENS] == list(range(26))
    assert (tok.im_end_id - base, tok.vision_start_id - base, tok.image_pad_id - base, tok.video_pad_id - base) == \
        (2, 9, 12, 13)
    assert set(tok.eos_ids) == {tok.im_end_id, base}
    # Special tokens vanish from decoded text; <think> is a plain added token and stays, as in Qwen3.
    ids = tok.encode("<|im_start|>a<think>b</think>c<|im_end|>")
    assert ids[0] == tok.token_id("<|im_start|>") and tok.decode(ids) == "a<think>b</think>c"


def test_chat_template_places_media_placeholders(tok):
    text = tok.apply_chat_template([
        {"role": "system", "content": "S"},
        {"role": "user", "content": [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "Q"}]},
        {"role": "assistant", "content": "A"}, {"role": "user", "content": "R"}])
    assert text == ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
                    "<|vision_start|><|video_pad|><|vision_end|>Q<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
                    "<|im_start|>user\nR<|im_end|>\n<|im_start|>assistant\n")


def test_incremental_decoder_never_splits_characters(tok):
    text = "plain, héllo, 世界, 🌍🚀, ñ!"
    ids = tok.encode(text)
    assert len(ids) > len(text)  # multi-byte characters span several byte tokens
    dec = IncrementalDecoder(tok)
    deltas = [dec.push(i) for i in ids]
    assert all("\ufffd" not in d for d in deltas) and "".join(deltas) + dec.flush() == text
    # A dangling partial character is released by flush, as the full decode shows it.
    dec = IncrementalDecoder(tok)
    partial = tok.encode("a€")[:-1]
    assert "".join(dec.push(i) for i in partial) == "a" and dec.flush() == tok.decode(partial)[1:]


def test_save_and_reload_keeps_ids_and_template(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    again = TextTokenizer.from_pretrained(tmp_path)
    sample = tok.apply_chat_template([{"role": "user", "content": "héllo <|image_pad|>"}])
    assert again.encode(sample) == tok.encode(sample) and again.backend.chat_template == CHATML_TEMPLATE
    with pytest.raises(FileNotFoundError):
        TextTokenizer.from_pretrained(tmp_path / "missing")
