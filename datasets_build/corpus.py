"""The rendered corpus: real compositions played on sampled instruments, with exact labels.

Each item of the build engine is one clip: a work (excerpt of whole bars up to ``max_seconds``)
rendered with one :class:`~datasets_build.corpus_augment.Augmentation`. A clip writes
``clips/<collection>/<clip>.wav`` (mono 16-bit), ``.json`` (its notes) and ``.mid``, and one line of
``clips.jsonl`` in the clip label schema of ``docs/data.md``. After the clips, the text manifests
(captions, QA, transcription, composition, generation, edits) are rewritten from ``clips.jsonl``,
and a summary table and plot are written. Works are split by a hash of their id, so every clip of a
work is in one split; test clips are played with sound fonts never used for training.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from datasets_build.corpus_augment import (
    Augmentation, apply_edit, apply_effects, choose_augmentation, choose_edit, instrument_labels,
)
from datasets_build.corpus_labels import ParsedWork, abc_key_name, parse_work, transposed_key
from datasets_build.corpus_sources import CorpusItem, Work, clip_items
from datasets_build.corpus_summary import write_corpus_summary
from datasets_build.corpus_text import edit_names_its_voice, edited_abc, text_records
from datasets_build.engine import BatchResult, BuildConfig, Failure, ShardFiles, run_build
from datasets_build.manifest import load_index, write_manifest
from m2ugen.errors import ConfigError, DataError, M2UGenError
from m2ugen.files import write_atomically
from m2ugen.notation.render import SynthNote, resolve_soundfont, synthesize

NAME = "clips"
SPLITS: tuple[str, ...] = ("train", "valid", "test")
TRAIN_SOUNDFONTS: tuple[str, ...] = ("FluidR3_GM.sf2", "TimGM6mb.sf2")
TEST_SOUNDFONTS: tuple[str, ...] = ("MuseScore_General.sf3",)
CLIP_KEYS: tuple[str, ...] = (
    "id", "work_id", "split", "audio", "sample_rate", "duration", "soundfont", "seed", "notes", "midi", "abc", "key",
    "meter", "tempo_bpm", "instruments", "n_parts", "style", "collection", "title", "composer", "license",
    "transpose", "tempo_scale",
)


@dataclass(frozen=True)
class CorpusConfig:
    """What to render. ``test_soundfonts`` None plays test clips with the training fonts too."""

    instrumentations: int = 3
    edits_per_work: int = 1
    max_seconds: float = 10.0
    sample_rate: int = 22050
    seed: int = 0
    train_soundfonts: tuple[str, ...] = TRAIN_SOUNDFONTS
    test_soundfonts: tuple[str, ...] | None = TEST_SOUNDFONTS
    valid_fraction: float = 0.05
    test_fraction: float = 0.05

    def __post_init__(self) -> None:
        if self.instrumentations < 1 or self.edits_per_work < 0:
            raise ConfigError("instrumentations must be >= 1 and edits_per_work >= 0")
        if not 1.0 <= self.max_seconds <= 600.0:
            raise ConfigError(f"max_seconds {self.max_seconds} is outside 1..600")
        if not 8000 <= self.sample_rate <= 48000:
            raise ConfigError(f"sample_rate {self.sample_rate} is outside 8000..48000")
        if not self.train_soundfonts:
            raise ConfigError("at least one training sound font is needed")
        if min(self.valid_fraction, self.test_fraction) < 0 or self.valid_fraction + self.test_fraction >= 1:
            raise ConfigError("valid_fraction and test_fraction must be >= 0 and sum to less than 1")


def split_of(work_id: str, config: CorpusConfig) -> str:
    """The split of a work: a stable hash of its id, so adding works never moves old ones."""
    position = zlib.crc32(work_id.encode("utf-8")) % 10_000 / 10_000
    if position < config.test_fraction:
        return "test"
    return "valid" if position < config.test_fraction + config.valid_fraction else "train"


@dataclass(frozen=True)
class ClipRow:
    """One line of ``clips.jsonl``."""

    data: dict[str, Any]

    @property
    def id(self) -> str:
        return self.data["id"]

    def to_dict(self) -> dict[str, Any]:
        return self.data


def validate_clip(obj: Any, *, where: str = "clip") -> ClipRow:
    """Check a clip row has every key of the label schema with the right kind of value.

    Raises:
        DataError: naming ``where`` and the problem.
    """
    if not isinstance(obj, Mapping):
        raise DataError(f"{where}: a clip must be a JSON object")
    missing = [key for key in CLIP_KEYS if key not in obj]
    if missing:
        raise DataError(f"{where}: missing key(s) {missing}")
    if obj["split"] not in SPLITS:
        raise DataError(f"{where}: split must be one of {SPLITS}, got {obj['split']!r}")
    for key in ("id", "work_id", "audio", "notes", "midi", "abc", "meter", "soundfont", "collection", "license"):
        if not isinstance(obj[key], str) or not obj[key]:
            raise DataError(f"{where}: {key} must be a non-empty string")
    if not isinstance(obj["instruments"], list) or len(obj["instruments"]) != obj["n_parts"]:
        raise DataError(f"{where}: instruments must list n_parts entries")
    if not (isinstance(obj["key"], Mapping) and {"tonic", "mode"} <= set(obj["key"])):
        raise DataError(f"{where}: key must be {{tonic, mode}}")
    return ClipRow(dict(obj))


class _ParseCache:
    """The last few parsed works (a work's clips are adjacent in id order); failures are cached too."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self.entries: OrderedDict[str, ParsedWork | DataError] = OrderedDict()

    def get(self, work: Work) -> ParsedWork:
        if work.id not in self.entries:
            try:
                self.entries[work.id] = parse_work(work)
            except DataError as err:
                self.entries[work.id] = err
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        entry = self.entries[work.id]
        if isinstance(entry, DataError):
            raise entry
        return entry


def _part_facts(parsed: ParsedWork) -> tuple[list[float], tuple[int, int]]:
    medians = [float(np.median([n.pitch for n in parsed.notes if n.part == p])) for p in range(len(parsed.part_names))]
    pitches = [n.pitch for n in parsed.notes]
    return medians, (min(pitches), max(pitches))


def _excerpt_end_q(parsed: ParsedWork, tempo_bpm: float, max_seconds: float) -> float:
    """Where the clip ends (quarter notes): the whole work if it fits, else the last bar line within ``max_seconds``."""
    limit = max_seconds * tempo_bpm / 60.0
    if parsed.length_q <= limit:
        return parsed.length_q
    bars = [end for end in parsed.bar_ends_q if 0 < end <= limit]
    return bars[-1] if bars else limit


def _fonts(split: str, config: CorpusConfig) -> list[str]:
    return list(config.test_soundfonts if split == "test" and config.test_soundfonts else config.train_soundfonts)


@dataclass(frozen=True)
class ClipPlan:
    """Everything that decides a clip's audio and labels."""

    aug: Augmentation
    edit: dict[str, Any] | None
    end_q: float
    tempo_bpm: float


def plan_clip(item: CorpusItem, parsed: ParsedWork, config: CorpusConfig) -> ClipPlan:
    """The augmentation (and edit) of a clip; an edit keeps its source's bars."""
    work = item.work
    medians, pitch_range = _part_facts(parsed)
    fonts = _fonts(split_of(work.id, config), config)
    pick = dict(part_medians=medians, pitch_range=pitch_range, soundfonts=fonts, seed=config.seed)
    if not item.edit:
        aug = choose_augmentation(work.id, item.variant, **pick)
        tempo = parsed.tempo_bpm * aug.tempo_scale
        return ClipPlan(aug, None, _excerpt_end_q(parsed, tempo, config.max_seconds), tempo)
    source = choose_augmentation(work.id, 0, **pick)
    edit = choose_edit(work.id, item.variant, source=source, n_parts=len(medians), pitch_range=pitch_range, seed=config.seed)
    aug = apply_edit(source, edit, len(medians))
    end_q = _excerpt_end_q(parsed, parsed.tempo_bpm * source.tempo_scale, config.max_seconds)
    return ClipPlan(aug, {"source": f"{work.id}__v0", **edit}, end_q, parsed.tempo_bpm * aug.tempo_scale)


def clip_notes(parsed: ParsedWork, plan: ClipPlan, jitter_key: tuple[int | str, ...]) -> list[SynthNote]:
    """The notes the clip plays, in seconds, transposed, with their velocities and programs."""
    aug, seconds = plan.aug, 60.0 / plan.tempo_bpm
    rng = np.random.default_rng([zlib.crc32(str(k).encode("utf-8")) for k in jitter_key])
    notes = []
    for note in parsed.notes:
        jitter = int(rng.integers(-aug.velocity_jitter, aug.velocity_jitter + 1)) if aug.velocity_jitter else 0
        if note.onset_q >= plan.end_q or (aug.parts is not None and note.part not in aug.parts):
            continue
        velocity = int(np.clip(round(note.velocity * aug.velocity_scale[note.part]) + jitter, 1, 127))
        notes.append(SynthNote(note.onset_q * seconds, min(note.offset_q, plan.end_q) * seconds,
                               note.pitch + aug.transpose, velocity, aug.programs[note.part], note.part))
    return notes


def _midi(notes: list[SynthNote], tempo_bpm: float, aug: Augmentation, scale: float = 1.0):
    """A PrettyMIDI of ``notes``, one instrument per part named by its GM program.

    ``scale`` stretches the times (the ABC writer gets the notes at the rounded tempo it writes).
    """
    import pretty_midi

    from m2ugen.notation.instruments import program_name

    midi = pretty_midi.PrettyMIDI(initial_tempo=tempo_bpm)
    for part in sorted({n.part for n in notes}):
        inst = pretty_midi.Instrument(program=aug.programs[part], name=program_name(aug.programs[part]))
        inst.notes = [pretty_midi.Note(n.velocity, n.pitch, n.onset * scale, n.offset * scale) for n in notes if n.part == part]
        midi.instruments.append(inst)
    return midi


def _abc(item: CorpusItem, parsed: ParsedWork, plan: ClipPlan, notes: list[SynthNote], key_tonic: str) -> str:
    """The source ABC when the clip plays it exactly as written, else the clip written as ABC (one V: per part)."""
    from m2ugen.notation.abc import AbcConfig, parse_meter, write_abc

    aug = plan.aug
    as_written = (aug.transpose == 0 and aug.tempo_scale == 1.0 and aug.parts is None and len(parsed.part_names) == 1
                  and plan.end_q >= parsed.length_q)
    if item.work.abc is not None and as_written:
        return item.work.abc
    rounded = float(min(400, max(10, round(plan.tempo_bpm))))
    key = abc_key_name(key_tonic, parsed.key_mode)
    config = AbcConfig(meter=parsed.meter if parse_meter(parsed.meter) else "4/4", unit=16, tempo_bpm=rounded,
                       key=key, title=(parsed.title or item.work.id).replace("\n", " "))
    return write_abc(_midi(notes, rounded, aug, scale=plan.tempo_bpm / rounded), config)


def _label_abc(item: CorpusItem, parsed: ParsedWork, plan: ClipPlan, notes: list[SynthNote], key_tonic: str,
               config: CorpusConfig) -> str:
    """The clip's ``abc`` label; an edit clip's is its source's ABC edited by the score tools
    (:func:`~datasets_build.corpus_text.edited_abc`), the path the assistant takes for the same tag."""
    if plan.edit is None:
        return _abc(item, parsed, plan, notes, key_tonic)
    source_item = replace(item, variant=0, edit=False)
    source = plan_clip(source_item, parsed, config)
    source_notes = clip_notes(parsed, source, (config.seed, item.work.id, 0))
    if not edit_names_its_voice(plan.edit, [n.part for n in source_notes]):
        raise DataError(f"{item.id}: the edited part does not play in the source excerpt")
    source_tonic = transposed_key(parsed.key_tonic, parsed.key_mode, source.aug.transpose)
    return edited_abc(_abc(source_item, parsed, source, source_notes, source_tonic), plan.edit)


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    import soundfile as sf

    write_atomically(path, lambda tmp: sf.write(str(tmp), audio, sample_rate, subtype="PCM_16", format="WAV"), "WAV")


def build_clip(item: CorpusItem, parsed: ParsedWork, config: CorpusConfig, out_dir: Path) -> dict[str, Any]:
    """Render one clip, write its audio, notes and MIDI, and return its label row.

    Raises:
        M2UGenError: the render or a write failed (MediaError, ConfigError).
    """
    work = item.work
    plan = plan_clip(item, parsed, config)
    aug = plan.aug
    notes = clip_notes(parsed, plan, (config.seed, work.id, 0 if item.edit else item.variant))
    if not notes:
        raise DataError(f"{item.id}: no notes left to play in the excerpt")
    end_s = plan.end_q * 60.0 / plan.tempo_bpm
    font = resolve_soundfont(aug.soundfont)
    volumes = dict(enumerate(aug.part_volume))
    stereo = synthesize(notes, sample_rate=config.sample_rate, soundfont=font, part_volume=volumes, end_s=end_s)
    audio = apply_effects(stereo, aug, config.sample_rate, (config.seed, item.id))
    folder = Path("clips") / work.collection.replace(":", "_")
    wav, notes_json, midi_file = (folder / f"{item.id}{ext}" for ext in (".wav", ".json", ".mid"))  # ids may hold dots
    _write_wav(out_dir / wav, audio, config.sample_rate)
    parts = sorted({n.part for n in notes})
    labels = [[round(n.onset, 6), round(n.offset, 6), n.pitch, n.velocity, n.program, n.part, n.is_drum] for n in notes]
    write_atomically(out_dir / notes_json,
                     lambda tmp: tmp.write_text(json.dumps(labels, separators=(",", ":")), encoding="utf-8"), "notes")
    midi = _midi(notes, plan.tempo_bpm, aug)
    write_atomically(out_dir / midi_file, lambda tmp: midi.write(str(tmp)), "MIDI")
    tonic = transposed_key(parsed.key_tonic, parsed.key_mode, aug.transpose)
    mean_pitch = {p: np.mean([n.pitch for n in notes if n.part == p]) for p in parts}
    row = {
        "id": item.id, "work_id": work.id, "split": split_of(work.id, config),
        "audio": wav.as_posix(), "sample_rate": config.sample_rate,
        "duration": round(audio.size / config.sample_rate, 6), "soundfont": font.name, "seed": config.seed,
        "notes": notes_json.as_posix(), "midi": midi_file.as_posix(),
        "abc": _label_abc(item, parsed, plan, notes, tonic, config), "key": {"tonic": tonic, "mode": parsed.key_mode},
        "meter": parsed.meter, "tempo_bpm": round(plan.tempo_bpm, 3), "instruments": instrument_labels(aug.programs, parts),
        "n_parts": len(parts), "style": parsed.style, "collection": work.collection, "title": parsed.title,
        "composer": parsed.composer, "license": work.license, "transpose": aug.transpose, "tempo_scale": aug.tempo_scale,
        "melody_part": int(max(mean_pitch, key=mean_pitch.get)), "score_seconds": round(end_s, 6),
        "augmentation": aug.to_dict(),
    }
    if plan.edit is not None:
        row["edit"] = plan.edit
    return row


def corpus_processor(config: CorpusConfig, out_dir: Path):  # -> Callable[[list[CorpusItem]], BatchResult]
    """The engine's ``process``: clips of a batch -> rows, or failures with the step that failed."""
    cache = _ParseCache()

    def process(batch: list[CorpusItem]) -> BatchResult:
        result = BatchResult()
        for item in batch:
            try:
                parsed = cache.get(item.work)
            except M2UGenError as err:
                result.failures.append(Failure(item.id, "parse", str(err)))
                continue
            try:
                result.records.append(ClipRow(build_clip(item, parsed, config, out_dir)))
            except M2UGenError as err:
                result.failures.append(Failure(item.id, "render", str(err)))
        return result

    return process


def clip_rows(out_dir: Path) -> list[dict[str, Any]]:
    """Every clip row of a build folder (all shards), sorted by id."""
    shards = sorted(Path(out_dir).glob(f"{NAME}.shard-*.jsonl")) or [Path(out_dir) / f"{NAME}.jsonl"]
    rows: dict[str, dict[str, Any]] = {}
    for path in shards:
        rows.update(load_index(path))
    return [rows[key] for key in sorted(rows)]


def write_text_manifests(out_dir: Path) -> dict[str, int]:
    """Rewrite ``<kind>.<split>.jsonl`` (atomically) from the clip rows; returns records per file.

    A sharded build also gets ``clips.jsonl``, every shard's rows in one file: the file training and
    evaluation read."""
    rows = clip_rows(out_dir)
    if any(Path(out_dir).glob(f"{NAME}.shard-*.jsonl")):
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        write_atomically(Path(out_dir) / f"{NAME}.jsonl", lambda tmp: tmp.write_text(lines, encoding="utf-8"), "clips")
    counts = {}
    for (split, kind), records in sorted(text_records(rows).items()):
        path = Path(out_dir) / f"{kind}.{split}.jsonl"
        counts[path.name] = write_manifest(path, records)
    return counts


def build_corpus(works: Sequence[Work], config: CorpusConfig, build: BuildConfig) -> dict[str, Any]:
    """Render this shard's pending clips of ``works``, then rewrite the text manifests and the summary.

    Raises:
        ConfigError: a sound font is missing.
        DataError: too many clips failed (see the engine).
    """
    for font in {*config.train_soundfonts, *(config.test_soundfonts or ())}:
        resolve_soundfont(font)
    items = clip_items(list(works), instrumentations=config.instrumentations, edits_per_work=config.edits_per_work)
    report = run_build(NAME, items, build, corpus_processor(config, Path(build.out_dir)), validate=validate_clip)
    manifests = write_text_manifests(build.out_dir)
    files = ShardFiles(build.out_dir, NAME, build.shard)
    return write_corpus_summary(build.out_dir, files, report, manifests, clip_rows(build.out_dir),
                                failure_counts(build.out_dir))


def failure_counts(out_dir: Path) -> Counter[str]:
    """Failures still standing (not later built) by stage, over all shards."""
    done = {row["id"] for row in clip_rows(out_dir)}
    stages: Counter[str] = Counter()
    for path in sorted(Path(out_dir).glob(f"{NAME}_failures*.jsonl")):
        stages.update(entry["stage"] for key, entry in load_index(path).items() if key not in done)
    return stages
