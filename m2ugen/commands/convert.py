"""``m2ugen convert``: released M2UGen checkpoints, Meta LLaMA and audiocraft MusicGen -> our layouts, and
a trained run -> a self-contained bundle (m2ugen-mini)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from m2ugen.config import M2UGenConfig
from m2ugen.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("convert", help="convert released or foreign checkpoints; bundle a trained run",
                                   description="Convert checkpoints into the layouts m2ugen loads.")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")

    rel = kinds.add_parser("released", help="a released M2UGen checkpoint.pth -> an m2ugen checkpoint directory",
                           epilog="example: m2ugen convert released ckpts/M2UGen-MusicGen/checkpoint.pth "
                                  "--tokenizer ckpts/LLaMA --musicgen checkpoints/musicgen-small "
                                  "--out m2ugen-musicgen-small")
    rel.add_argument("checkpoint", help="checkpoint.pth ({'model': state_dict}, fp16/bf16/fp32)")
    rel.add_argument("--out", required=True, help="output directory (new or empty)")
    rel.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    rel.add_argument("--tokenizer", required=True, help="folder with LLaMA's tokenizer.model")
    rel.add_argument("--preset", default="paper", help="sizes not stored in the file (default: paper; "
                     "paper-audioldm2 for the AudioLDM2 build)")
    rel.add_argument("--musicgen", default=None, help="local transformers MusicGen directory of the same size "
                     "(config and processor; needed for MusicGen builds)")
    rel.add_argument("--audioldm2", default=None, help="local AudioLDM2 pipeline directory (AudioLDM2 builds)")
    rel.add_argument("--mert", default=None, help="local MERT directory for its config (default: built in), and "
                     "its weights when the checkpoint holds only the trained tensors")
    rel.add_argument("--vit", default=None, help="local ViT directory, as for --mert")
    rel.add_argument("--vivit", default=None, help="local ViViT directory, as for --mert")
    rel.add_argument("--params", default=None, help="LLaMA params.json, for norm_eps (default 1e-5)")
    rel.add_argument("--conditioning", choices=("caption", "embeddings"), default="caption",
                     help="how the decoder is conditioned: the LLM's text as the original did (default), "
                          "or the projector's embeddings")
    rel.set_defaults(func=run_released)

    llama = kinds.add_parser("llama", help="Meta LLaMA consolidated.*.pth + params.json -> Hugging Face directory",
                             epilog="example: m2ugen convert llama ckpts/LLaMA/7B --out checkpoints/Llama-2-7b-hf")
    llama.add_argument("source", help="folder with consolidated.*.pth and params.json")
    llama.add_argument("--out", required=True, help="output directory (new or empty)")
    llama.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    llama.add_argument("--tokenizer", default=None, help="folder with tokenizer.model (default: source or its parent)")
    llama.add_argument("--max-positions", type=int, default=4096, help="max_position_embeddings (LLaMA-2: 4096)")
    llama.set_defaults(func=run_llama)

    mg = kinds.add_parser("musicgen", help="audiocraft MusicGen state_dict.bin -> transformers MusicGen directory",
                          epilog="example: m2ugen convert musicgen my_run/state_dict.bin --compression "
                                 "my_run/compression_state_dict.bin --reference checkpoints/musicgen-small "
                                 "--out musicgen-ft")
    mg.add_argument("state_dict", help="audiocraft state_dict.bin (the language model)")
    mg.add_argument("--compression", default=None, help="compression_state_dict.bin")
    mg.add_argument("--reference", required=True, help="local transformers MusicGen directory of the same size")
    mg.add_argument("--out", required=True, help="output directory (new or empty)")
    mg.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    mg.set_defaults(func=run_musicgen)

    bundle = kinds.add_parser(
        "bundle", help="a trained run -> one self-contained model folder (how m2ugen-mini is shipped)",
        description="Write a trained model as one folder that needs no other path: the LLM and music encoder "
                    "a run loaded from folders are stored inside it (matrices in 16 bits). Run it from the "
                    "folder the training ran in (the run's config names its parts relative to it).",
        epilog="example: m2ugen convert bundle runs/mini/stage3 --out m2ugen/assets/mini --overwrite")
    bundle.add_argument("run", help="a finished training stage's folder (its final/ is read), a final/ folder, "
                        "or a model folder")
    bundle.add_argument("--out", required=True, help="output directory (new or empty)")
    bundle.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    bundle.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                        help="storage of the weight matrices (default float16; vectors stay float32); "
                             "loading casts back to the model's dtype")
    bundle.set_defaults(func=run_bundle)


def check_out_dir(args: argparse.Namespace) -> None:
    """Refuse to mix a new conversion into a folder that already holds files (stale shards would stay)."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: --out must be a directory")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise ConfigError(f"{out}: not empty; choose a new --out or pass --overwrite")


def run_released(args: argparse.Namespace) -> int:
    check_out_dir(args)
    from m2ugen.convert.llama import read_params
    from m2ugen.convert.released import convert_released

    base = M2UGenConfig.preset(args.preset)
    changes = {k: v for k, v in dict(mert_path=args.mert, vit_path=args.vit, vivit_path=args.vivit).items() if v}
    if args.musicgen:
        changes.update(decoder="musicgen", decoder_path=args.musicgen)
    if args.audioldm2:
        changes.update(decoder="audioldm2", decoder_path=args.audioldm2)
    base = dataclasses.replace(base, **changes)
    norm_eps = float(read_params(args.params).get("norm_eps", 1e-5)) if args.params else 1e-5
    report = convert_released(args.checkpoint, args.out, tokenizer=args.tokenizer, base=base, norm_eps=norm_eps)
    if args.conditioning != "caption":
        config = M2UGenConfig.load(report.out / "config.json")
        dataclasses.replace(config, decoder_conditioning=args.conditioning).save(report.out / "config.json")
    print("\n".join(report.lines))
    return 0


def run_llama(args: argparse.Namespace) -> int:
    check_out_dir(args)
    from m2ugen.convert.llama import convert_meta_llama

    out = convert_meta_llama(args.source, args.out, tokenizer=args.tokenizer, max_positions=args.max_positions)
    print(f"wrote {out}")
    return 0


def run_bundle(args: argparse.Namespace) -> int:
    check_out_dir(args)
    from m2ugen.convert.bundle import bundle_run

    print("\n".join(bundle_run(args.run, args.out, dtype=args.dtype).lines))
    return 0


def run_musicgen(args: argparse.Namespace) -> int:
    check_out_dir(args)
    from m2ugen.convert.musicgen import convert_audiocraft_musicgen

    notes = convert_audiocraft_musicgen(args.state_dict, args.compression, args.reference, args.out)
    print("\n".join(notes))
    return 0
