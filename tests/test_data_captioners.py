"""Captioner and instruction-writer interfaces: the caption cache, plugin specs, the Assistant adapter, writers."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from data_utils import CountingCaptioner

from datasets_build.captioners import MUSIC_CAPTION_QUESTION, AssistantCaptioner, CaptionCache, load_captioner
from datasets_build.manifest import load_index
from datasets_build.writers import InstructionRequest, TemplateWriter, load_writer
from m2ugen.errors import CheckpointError, ConfigError, DataError


def items(*stems: str) -> list[tuple[str, Path]]:
    return [(stem, Path(f"/media/{stem}.wav")) for stem in stems]


def test_cache_captions_each_item_once_and_isolates_bad_items(tmp_path):
    captioner = CountingCaptioner(captions={"empty": "  "}, fail_on=["broken"])
    cache = CaptionCache(captioner, tmp_path / "c.jsonl", role="music")
    captions, failures = cache.get(items("a", "broken", "b", "empty"))
    assert captions == {"a": "music for a", "b": "music for b"}
    assert {(f.id, f.stage) for f in failures} == {("broken", "music_caption"), ("empty", "music_caption")}
    assert "cannot caption" in next(f.reason for f in failures if f.id == "broken")
    assert "returned empty text" in next(f.reason for f in failures if f.id == "empty")
    assert captioner.calls == ["a", "b", "empty"]  # the batch failed, then each item alone; "broken" never succeeded
    cache.close()

    again = CaptionCache(captioner, tmp_path / "c.jsonl", role="music")  # a resumed run
    captions, failures = again.get(items("a", "b", "c"))
    assert captions == {"a": "music for a", "b": "music for b", "c": "music for c"} and not failures
    assert captioner.calls == ["a", "b", "empty", "c"]
    again.close()
    assert set(load_index(tmp_path / "c.jsonl")) == {"a", "b", "c"}

    other = CountingCaptioner(name="another-model")
    switched = CaptionCache(other, tmp_path / "c.jsonl", role="music")  # captions of another model are not reused
    switched.get(items("a"))
    assert other.calls == ["a"]
    switched.close()


def test_cache_rejects_a_captioner_that_returns_the_wrong_count(tmp_path):
    class Short:
        name = "short"

        def caption(self, paths):
            return ["one"]

    with pytest.raises(DataError, match="returned 1 captions for 2 inputs"):
        CaptionCache(Short(), tmp_path / "c.jsonl", role="music").get(items("a", "b"))


def test_assistant_adapter_uses_a_fresh_answer_turn_per_clip():
    from m2ugen.assistant import Assistant

    parameters = inspect.signature(Assistant.chat).parameters
    assert {"text", "audio", "task"} <= set(parameters) and callable(Assistant.reset)

    class Reply:
        def __init__(self, text):
            self.text = text

    class FakeAssistant:
        def __init__(self):
            self.log = []

        def reset(self):
            self.log.append("reset")

        def chat(self, text, audio=None, *, task="auto", **settings):
            self.log.append((text, Path(audio).name, task, settings["temperature"]))
            return Reply(f" caption of {Path(audio).stem} ")

    fake = FakeAssistant()
    captioner = AssistantCaptioner(fake, max_new_tokens=16)
    assert captioner.caption([Path("x.wav"), Path("y.mp3")]) == ["caption of x", "caption of y"]
    assert fake.log == ["reset", (MUSIC_CAPTION_QUESTION, "x.wav", "answer", 0.4), "reset", (MUSIC_CAPTION_QUESTION, "y.mp3", "answer", 0.4)]


def test_specs_and_plugins(tmp_path):
    with pytest.raises(ConfigError, match="expected assistant:DIR, image:DIR, video:DIR or plugin:module:attr"):
        load_captioner("blip2:/x")
    with pytest.raises(ConfigError, match="plugin 'nosuchmodule:X'"):
        load_captioner("plugin:nosuchmodule:X")
    with pytest.raises(ConfigError, match="needs a 'name' attribute and a 'caption"):
        load_captioner("plugin:pathlib:PurePath")
    with pytest.raises(CheckpointError, match="not a image captioner directory"):
        load_captioner(f"image:{tmp_path}")
    assert isinstance(load_writer("template"), TemplateWriter)
    with pytest.raises(CheckpointError, match="not a causal LM directory"):
        load_writer(f"lm:{tmp_path}")
    with pytest.raises(ConfigError, match="expected template, lm:DIR or plugin:module:attr"):
        load_writer("gpt4")


def test_chat_lm_without_a_chat_template_is_refused(tmp_path):
    from data_utils import _word_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    from datasets_build.writers import ChatLMWriter

    tokenizer = _word_tokenizer(["a", "b"], ["[PAD]", "[UNK]"], pad_token="[PAD]")
    tokenizer.save_pretrained(tmp_path)
    LlamaForCausalLM(LlamaConfig(vocab_size=4, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                                 num_attention_heads=1, num_key_value_heads=1)).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="has no chat template"):
        ChatLMWriter(tmp_path)


def test_template_writer_is_deterministic():
    requests = [
        InstructionRequest("edit", context="A piano piece.", target="An acoustic guitar strums chords."),
        InstructionRequest("image", context="a beach at sunset", target="Calm ambient synth pads."),
        InstructionRequest("video", context="a dog running", target="Fast drums and bass."),
    ]
    first, second = TemplateWriter().write(requests), TemplateWriter().write(requests)
    assert first == second
    assert first[0].instruction == "Change this music so that it becomes an acoustic guitar strums chords, keeping its tempo and key."
    assert first[1].instruction == "Generate a music for the image that fits it: a beach at sunset."
    assert first[2].response == "Here is a music that is fast drums and bass."
