"""m2ugen.assistant: any-to-music chat end to end on the tiny demo model (random weights, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from m2ugen.assistant import DEMO_LABEL, Assistant, Conversation
from m2ugen.audio import Audio
from m2ugen.errors import CheckpointError, ConfigError, MediaError
from m2ugen.config import M2UGenConfig
from m2ugen.model import Generation, M2UGen
from m2ugen.prompt import Turn
from media_utils import image_array, melody, tone, write_audio, write_image, write_video

FAST = dict(max_new_tokens=8, seed=0)


@pytest.fixture(scope="module")
def bot():
    """One demo assistant for the module. Its gates are opened (they start at 0 = no injection) so
    that attached media change what the LLM computes, as after training."""
    bot = Assistant.tiny()
    with torch.no_grad():
        bot.model.llm.injection.gate.fill_(1.0)
    return bot


@pytest.fixture
def fresh(bot):
    bot.reset()
    yield bot
    bot.reset()


@pytest.fixture
def spy(fresh, monkeypatch):
    """Record every call to the decoder: (method, positional args, keyword args)."""
    calls = []
    for name in ("generate", "caption_generate"):
        original = getattr(fresh.decoder, name)

        def record(*args, _name=name, _original=original, **kwargs):
            calls.append((_name, args, kwargs))
            return _original(*args, **kwargs)

        monkeypatch.setattr(fresh.decoder, name, record)
    return calls


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    return {
        "song": write_audio(folder / "song.wav", melody(sr=32000), sr=32000),
        "other": write_audio(folder / "other.wav", tone(220.0, seconds=1.25, sr=32000), sr=32000),
        "image": write_image(folder / "picture.png", 48, 64),
        "cmyk": write_image(folder / "cmyk.jpg", 48, 64, mode="CMYK"),
        "video": write_video(folder / "clip.mp4", num_frames=40, fps=10),
    }


def _samples(bot, seconds):
    return int(round(seconds * bot.decoder.sample_rate))


# --- the four tasks ----------------------------------------------------------------------------

def test_text_to_music(fresh):
    reply = fresh.chat("Compose a calm piano melody", seconds=0.5, **FAST)
    assert reply.task == "generate"
    assert isinstance(reply.audio, Audio) and reply.audio.sample_rate == fresh.decoder.sample_rate
    assert reply.audio.num_samples == _samples(fresh, 0.5)
    assert np.isfinite(reply.audio.samples).all() and np.abs(reply.audio.samples).max() > 0
    assert reply.text.startswith(DEMO_LABEL)
    assert fresh.last_audio is reply.audio


def test_image_to_music_is_conditioned_on_the_image(fresh, media, spy, tmp_path):
    first = fresh.chat("Write music for this picture", image=media["image"], seconds=0.5, **FAST)
    assert first.task == "generate" and first.audio.num_samples == _samples(fresh, 0.5)
    fresh.reset()
    other = write_image(tmp_path / "other.png", 48, 64, mode="L")
    fresh.chat("Write music for this picture", image=other, seconds=0.5, **FAST)
    fresh.reset()
    fresh.chat("Write music for this picture", image=media["image"], seconds=0.5, **FAST)
    first_cond, other_cond, again_cond = (args[0] for _, args, _ in spy)
    assert first_cond.shape == (1, *fresh.decoder.conditioning_shape)
    assert not torch.allclose(first_cond, other_cond)  # the image reaches the decoder's conditioning
    torch.testing.assert_close(first_cond, again_cond)


def test_cmyk_image_and_array_image_work(fresh, media):
    assert fresh.chat("Music for this", image=media["cmyk"], seconds=0.3, **FAST).audio is not None
    assert fresh.chat("Music for this", image=image_array(40, 40), seconds=0.3, **FAST).audio is not None


def test_video_to_music(fresh, media):
    reply = fresh.chat("Score this clip", video=media["video"], seconds=0.75, **FAST)
    assert reply.task == "generate" and reply.audio.num_samples == _samples(fresh, 0.75)


def test_music_question_answering(fresh, media, spy):
    reply = fresh.chat("What instruments are playing?", audio=media["song"], **FAST)
    assert reply.task == "answer" and reply.audio is None and not spy
    assert reply.text.startswith(DEMO_LABEL) and len(reply.text) > len(DEMO_LABEL)
    assert fresh.last_audio is not None  # the music stays the topic of the conversation


def test_edit_conditions_the_decoder_on_the_source(fresh, media, spy):
    reply = fresh.chat("Make it slower", audio=media["song"], **FAST)
    assert reply.task == "edit"
    (name, _, kwargs), = spy
    source = kwargs["source_audio"]
    assert isinstance(source, Audio) and source.sample_rate == fresh.decoder.sample_rate
    assert reply.audio.duration == pytest.approx(source.duration, abs=1 / source.sample_rate)  # edits keep the length


def test_the_edit_source_reaches_the_llm_and_the_decoder(fresh, media, spy):
    from m2ugen.media import load_audio

    fresh.chat("Make it slower", audio=media["song"], seconds=0.5, **FAST)
    fresh.chat("Make it slower", audio=media["other"], seconds=0.5, **FAST)
    (_, (cond_a, _), kw_a), (_, (cond_b, _), kw_b) = spy
    rate = fresh.decoder.sample_rate
    np.testing.assert_allclose(kw_a["source_audio"].samples, load_audio(media["song"], rate), atol=1e-6)
    np.testing.assert_allclose(kw_b["source_audio"].samples, load_audio(media["other"], rate), atol=1e-6)
    assert not torch.allclose(cond_a, cond_b)  # the LLM heard the source (MERT features) too


def test_follow_up_edit_uses_the_generated_music(fresh, spy):
    made = fresh.chat("Compose a jazz tune", seconds=0.5, **FAST)
    edited = fresh.chat("Now make it slower, with strings", seconds=0.5, **FAST)
    assert edited.task == "edit"
    assert spy[-1][2]["source_audio"] is made.audio
    assert fresh.last_audio is edited.audio


def test_melody_decoder_edit_reads_the_source_chroma(bot, media):
    from m2ugen.decoders.tiny import tiny_musicgen_melody

    melody_bot = Assistant(bot.model, tiny_musicgen_melody())
    decoder = melody_bot.decoder
    seen = []
    original = decoder.chroma_for_span
    decoder.chroma_for_span = lambda sources, *a, **k: seen.append(sources) or original(sources, *a, **k)
    reply = melody_bot.chat("Make it happier", audio=media["song"], seconds=0.5, **FAST)
    assert reply.task == "edit" and reply.audio.num_samples == _samples(melody_bot, 0.5)
    assert seen and np.abs(seen[0][0]).max() > 0.1  # the source's samples reached the chroma extractor


def test_transcription_request_returns_abc_and_midi(fresh, media):
    reply = fresh.chat("Transcribe this to sheet music", audio=media["song"])
    assert reply.task == "transcribe" and reply.audio is None
    assert reply.text == reply.abc and reply.abc.startswith("X:")
    assert reply.midi_path.is_file() and reply.midi_path.stat().st_size > 0
    assert fresh.history[-1].instruction == "Transcribe this to sheet music"


# --- conversation --------------------------------------------------------------------------------

def test_second_prompt_contains_the_first_turn(fresh):
    first = fresh.chat("What makes a melody memorable?", **FAST)
    first_ids = list(fresh.conversation.last_prompt_ids)
    fresh.chat("And a rhythm?", **FAST)
    second_ids = fresh.conversation.last_prompt_ids
    assert second_ids[:len(first_ids)] == first_ids
    prompt = fresh.model.tokenizer.decode(second_ids)
    assert "What makes a melody memorable?" in prompt and "And a rhythm?" in prompt
    assert first.text.removeprefix(DEMO_LABEL).strip()[:10] in prompt


def test_music_turns_keep_their_aud_tokens_in_the_history(fresh):
    fresh.chat("Compose a song", seconds=0.3, **FAST)
    assert fresh.history[-1].response.endswith("[AUD7]")


def test_history_is_bounded_by_the_context(fresh):
    fresh.conversation = Conversation(history=[Turn(f"old question {i} " * 20, f"answer {i} " * 20) for i in range(40)])
    fresh.chat("newest question", **FAST)
    ids = fresh.conversation.last_prompt_ids
    assert len(ids) <= fresh.config.max_context - FAST["max_new_tokens"]
    prompt = fresh.model.tokenizer.decode(ids)
    assert "newest question" in prompt and "old question 39" in prompt and "old question 0 " not in prompt


def test_reset_forgets_history_and_music(fresh):
    fresh.chat("Compose a song", seconds=0.3, **FAST)
    fresh.reset()
    assert fresh.history == [] and fresh.last_audio is None
    assert fresh.chat("Make it slower", **FAST).task == "answer"  # nothing to edit any more
    with pytest.raises(MediaError, match="nothing to edit"):
        fresh.chat("Make it slower", task="edit", **FAST)


def _deciding_model(prompt: str, makes_music: bool) -> M2UGen:
    """A tiny model whose config says it emits [AUD] and whose weights make it emit the whole run
    [AUD0]..[AUD7] after ``prompt`` (greedy), or never emit [AUD0] when ``makes_music`` is False.

    [AUD i] enters the residual stream as a large basis vector e_i, so the final norm turns it into
    ~8 e_i, and the head row of [AUD i+1] is 100 e_i; the [AUD0] row points along the final state of
    the prompt's last position.
    """
    from m2ugen.prompt import encode_dialogue

    model = M2UGen.from_config(M2UGenConfig.preset("tiny", emits_aud=True))
    emb, head = model.llm.model.model.embed_tokens, model.llm.model.lm_head
    eye = torch.eye(emb.weight.shape[1])
    ids, _ = encode_dialogue(model.tokenizer, prompt)
    seen = []
    hook = head.register_forward_hook(lambda module, args, out: seen.append(args[0][0, -1]))
    with torch.no_grad():
        model.llm.model(input_ids=torch.tensor([ids]))
        hook.remove()
        emb.new_weight.copy_(1000.0 * eye[:8])
        head.new_weight.zero_()
        head.new_weight[1:] = 100.0 * eye[:7]
        if makes_music:
            head.new_weight[0] = 50.0 * seen[0] / seen[0].norm()
    return model


def test_the_model_decides_to_edit_and_the_decoder_hears_the_source(media):
    """A model that emits [AUD] itself, with music in the conversation and a request to change it:
    an edit whose decoder is conditioned on the source audio."""
    from m2ugen.decoders.tiny import tiny_decoder

    bot = Assistant(_deciding_model("Make it slower", makes_music=True), tiny_decoder("musicgen"))
    calls = []
    original = bot.decoder.generate
    bot.decoder.generate = lambda *a, **k: calls.append(k) or original(*a, **k)
    reply = bot.chat("Make it slower", audio=media["song"], temperature=0.0, max_new_tokens=8, seconds=0.3)
    assert reply.task == "edit" and reply.audio is not None
    (kwargs,) = calls
    source = kwargs["source_audio"]
    assert isinstance(source, Audio) and source.sample_rate == 32000  # the file's own rate
    from m2ugen.media import load_audio
    np.testing.assert_allclose(source.samples, load_audio(media["song"], 32000), atol=1e-6)


def test_a_deciding_model_that_answers_in_words_makes_no_music(media):
    """The rules would call "Compose a song" music; a model that decides and answers in words wins."""
    from m2ugen.decoders.tiny import tiny_decoder

    bot = Assistant(_deciding_model("Compose a song", makes_music=False), tiny_decoder("musicgen"))
    bot.decoder.generate = lambda *a, **k: pytest.fail("the decoder ran for a text answer")
    reply = bot.chat("Compose a song", temperature=0.0, max_new_tokens=8)
    assert reply.task == "answer" and reply.audio is None


def test_rule_routed_models_ignore_a_stray_aud_run(fresh, monkeypatch):
    """For models that cannot decide (the random demo), the rules are final: an "answer" stays text."""
    original = fresh.model.generate

    def with_music(*args, **kwargs):
        return original(*args, **{**kwargs, "force_music": True})

    monkeypatch.setattr(fresh.model, "generate", with_music)
    reply = fresh.chat("Hello there", seconds=0.3, **FAST)
    assert reply.task == "answer" and reply.audio is None


# --- batched generation and caption mode ----------------------------------------------------------

def test_batched_generate(fresh, media, spy):
    fresh.chat("What is jazz?", **FAST)
    before = list(fresh.history)
    replies = fresh.generate(["calm piano", "fast drums", "music for this"], image=[None, None, media["image"]],
                             seconds=0.4, **FAST)
    assert [r.task for r in replies] == ["generate"] * 3
    assert all(r.audio.num_samples == _samples(fresh, 0.4) for r in replies)
    (name, args, _), = spy
    assert name == "generate" and args[0].shape[0] == 3  # one decoder call for the whole batch
    assert fresh.history == before  # the conversation is untouched


def test_caption_mode_prompts_the_decoder_with_the_llm_text(media):
    from m2ugen.config import M2UGenConfig
    from m2ugen.decoders.tiny import tiny_decoder
    from m2ugen.model import M2UGen

    model = M2UGen.from_config(M2UGenConfig.preset("tiny", decoder_conditioning="caption"))
    captions = []
    decoder = tiny_decoder("musicgen")
    original = decoder.caption_generate
    decoder.caption_generate = lambda texts, *a, **k: captions.append(list(texts)) or original(texts, *a, **k)
    bot = Assistant(model, decoder)
    reply = bot.chat("Compose a sad waltz", seconds=0.3, **FAST)
    assert captions == [[reply.text or "Compose a sad waltz"]]
    assert reply.audio.num_samples == int(0.3 * decoder.sample_rate)


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(text=""), ConfigError, "empty"),
    (dict(text="hi", task="sing"), ConfigError, "unknown task"),
    (dict(text="hi", seconds=0), ConfigError, "seconds"),
    (dict(text="hi", seconds=1e6), ConfigError, "seconds"),
    (dict(text="hi", temperature=-1), ConfigError, "temperature"),
    (dict(text="hi", audio=np.zeros(100, np.float32)), MediaError, "bare array"),
    (dict(text="hi", video=np.zeros((0, 8, 8, 3), np.uint8)), MediaError, "0 frame"),
    (dict(text="hi", audio="/nonexistent/song.wav"), MediaError, "not found"),
    (dict(text="write it down", task="transcribe"), MediaError, "nothing to transcribe"),
    (dict(text="hi", seed=2**64), ConfigError, "seed must be between 0 and"),
    (dict(text="hi", seed=-1), ConfigError, "seed must be between 0 and"),
    (dict(text="hi", max_new_tokens=10**6), ConfigError, "no room for the prompt"),
])
def test_bad_input_is_a_one_line_error(fresh, kwargs, error, match):
    with pytest.raises(error, match=match) as info:
        fresh.chat(**kwargs)
    assert "\n" not in str(info.value)


def test_audioldm2_cannot_edit(bot, monkeypatch):
    class NoSource:
        kind, supports_source_audio, sample_rate = "audioldm2", False, 16000

    stub = Assistant(bot.model, NoSource())
    monkeypatch.setattr(stub.model, "generate", lambda *a, **k: pytest.fail("the LLM ran before the check"))
    with pytest.raises(ConfigError, match="cannot edit"):
        stub.chat("Make it slower", audio=Audio(tone(seconds=0.5, sr=16000), 16000), **FAST)


def test_batched_generate_wants_a_list_of_prompts(fresh):
    with pytest.raises(ConfigError, match="list of prompts"):
        fresh.generate("a calm piano melody", **FAST)


def test_demo_projector_output_fits_its_decoder(fresh):
    ids = fresh.model.tokenizer("hello").input_ids
    (gen,) = fresh.model.generate([ids], max_new_tokens=2, force_music=True)
    assert isinstance(gen, Generation) and gen.conditioning.shape == fresh.decoder.conditioning_shape


def test_from_pretrained_loads_a_saved_checkpoint(bot, tmp_path):
    from m2ugen.checkpoints import save_pretrained

    with pytest.raises(CheckpointError, match="fused"):  # the Assistant's model is fused for inference
        save_pretrained(bot.model, tmp_path / "fused")
    # The demo's network is the seeded tiny preset (with the fixture's open gates): save an unfused copy.
    unfused = M2UGen.from_config(M2UGenConfig.preset("tiny"))
    with torch.no_grad():
        unfused.llm.injection.gate.fill_(1.0)
    save_pretrained(unfused, tmp_path / "ckpt")
    loaded = Assistant.from_pretrained(tmp_path / "ckpt")
    assert not loaded.untrained
    bot.reset()
    expected = bot.chat("Compose a song", seconds=0.3, temperature=0.0, **FAST)
    bot.reset()
    got = loaded.chat("Compose a song", seconds=0.3, temperature=0.0, **FAST)
    assert DEMO_LABEL + " " + got.text == expected.text
    np.testing.assert_array_equal(got.audio.samples, expected.audio.samples)


def test_a_failed_turn_leaves_the_conversation_unchanged(fresh, media, monkeypatch):
    fresh.chat("What instruments are playing?", audio=media["song"], **FAST)
    before_history, before_audio = list(fresh.history), fresh.last_audio

    def broken(*args, **kwargs):
        raise ConfigError("decoder failed")

    monkeypatch.setattr(fresh.decoder, "generate", broken)
    with pytest.raises(ConfigError, match="decoder failed"):
        fresh.chat("Make it slower", audio=media["other"], **FAST)
    assert fresh.history == before_history and fresh.last_audio is before_audio
