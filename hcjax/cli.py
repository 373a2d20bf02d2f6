"""The `hcjax` command: train | eval | export | convert | samples and the tools of each task.

Data commands take argparse options; the training commands take absl flags with
ml_collections config overrides (`--config configs/x.py:variant --config.key=value`).
Known user errors print one line (`hcjax: error: ...`) and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from hcjax import errors
from hcjax.data import errors as data_errors

DATASETS_CONVERT = ("celeba", "celeba_spoof", "deepfashion", "ucf101", "voc")
DATASETS_SAMPLES = ("celeba", "celeba_spoof", "deepfashion", "ucf101", "voc")

# Errors that are the user's to fix: shown as one line, never as a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    data_errors.AnnotationError, data_errors.CorruptRecordError, data_errors.ImageDecodeError,
    data_errors.MissingDataError, data_errors.ShardingError, errors.ConfigError,
)


def _static_psnr(text: str) -> float | str | None:
  if text.lower() in ("none", "off"):
    return None
  if text == "auto":
    return text
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected dB (e.g. 30) or none, got {text!r}") from None
  if value != value:  # nan
    raise argparse.ArgumentTypeError("expected dB (e.g. 30) or none, got nan")
  return value


def _convert(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(
      prog="hcjax convert", description="Original dataset files -> sharded TFRecords.")
  parser.add_argument("dataset", choices=DATASETS_CONVERT)
  parser.add_argument("--src", required=True, help="folder holding the original files")
  parser.add_argument("--out", required=True, help="output folder for TFRecords")
  parser.add_argument("--shards", type=int, default=8, help="files per split")
  parser.add_argument("--quiet", action="store_true", help="no progress bar")
  parser.add_argument("--sbd", help="voc only: SBD benchmark_RELEASE/dataset (cls/*.mat) or a "
                      "folder with SegmentationClassAug/ + train_aug.txt; train becomes train_aug")
  ucf = parser.add_argument_group("ucf101 only (frame triplets; see data/ucf101/README.md)")
  ucf.add_argument("--layout", choices=("ucf101", "vimeo", "dvf_test"),
                   help="what --src holds (default: detected): UCF-101 videos or frame folders, "
                   "Vimeo-90K triplets (sequences/ + tri_*list.txt), or DVF's test set")
  ucf.add_argument("--splits", help="the official ucfTrainTestlist/ folder (default: in --src "
                   "or next to it)")
  ucf.add_argument("--split-number", type=int, choices=(1, 2, 3), help="official split (default 1)")
  ucf.add_argument("--stride", type=int, help="a triplet starts every STRIDE frames (default 8)")
  ucf.add_argument("--gap", type=int, help="frames between a triplet's frames (default 1: "
                   "consecutive)")
  ucf.add_argument("--static-psnr", type=_static_psnr, default="auto", metavar="DB",
                   help="drop triplets whose outer frames have PSNR above DB (default 30 for "
                   "UCF-101 videos, none for Vimeo-90K); `none` keeps all")
  ucf.add_argument("--max-triplets-per-video", type=int, metavar="N",
                   help="keep at most N triplets of a video, evenly spread")
  ucf.add_argument("--dvf-test", metavar="DIR", help="DVF's UCF-101 test set (<n>/frame_00.png, "
                   "frame_01_gt.png, frame_02.png, motion_mask.png) becomes the test split")
  ucf.add_argument("--dvf-masks", metavar="DIR", help="DVF's motion masks (<n>/motion_mask.png) "
                   "when they are not in the test folders (default: also looks in "
                   "motion_masks_ucf101_interp/ beside them)")
  ucf.add_argument("--workers", type=int, default=1, help="processes decoding videos "
                   "(output identical for any number)")
  fashion = parser.add_argument_group("deepfashion only (see data/deepfashion/README.md)")
  fashion.add_argument("--benchmark", choices=("category", "inshop", "landmarks"),
                       help="which DeepFashion benchmark --src holds (required)")
  spoof = parser.add_argument_group("celeba_spoof only (see data/celeba_spoof/README.md)")
  spoof.add_argument("--margin", type=float, help="context around the face box on each side, "
                     "as a fraction of its size (default 0.2; 0 = the authors' crop)")
  spoof.add_argument("--protocol", help="folder of <split>_label.json lists (default "
                     "metas/intra_test), e.g. metas/protocol1")
  spoof.add_argument("--skip-missing", action="store_true",
                     help="celeba_spoof and deepfashion: leave out (and count) listed images "
                     "(or _BB.txt files) that are missing")
  spoof.add_argument("--depth", metavar="DIR", help="depth maps DIR/<image id>.png (default: "
                     "<name>_depth.png beside each image, when there)")
  spoof.add_argument("--reflection", metavar="DIR", help="reflection maps, as --depth")
  args = parser.parse_args(argv)
  if args.dataset != "deepfashion" and args.benchmark is not None:
    parser.error("--benchmark is only for deepfashion")
  if args.dataset == "deepfashion" and args.benchmark is None:
    parser.error("deepfashion needs --benchmark category, inshop or landmarks")
  spoof_options = {"--margin": args.margin, "--protocol": args.protocol,
                   "--skip-missing": (args.skip_missing and args.dataset != "deepfashion") or None,
                   "--depth": args.depth, "--reflection": args.reflection}
  if args.dataset != "celeba_spoof":
    given = [k for k, v in spoof_options.items() if v is not None]
    if given:
      parser.error(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} only for "
                   "celeba_spoof")
  ucf_options = {"--layout": args.layout, "--splits": args.splits,
                 "--split-number": args.split_number, "--stride": args.stride, "--gap": args.gap,
                 "--max-triplets-per-video": args.max_triplets_per_video,
                 "--dvf-test": args.dvf_test, "--dvf-masks": args.dvf_masks,
                 "--static-psnr": None if args.static_psnr == "auto" else True,
                 "--workers": None if args.workers == 1 else args.workers}
  if args.dataset != "ucf101":
    given = [k for k, v in ucf_options.items() if v is not None]
    if given:
      parser.error(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} only for ucf101")
  if args.dataset != "voc" and args.sbd is not None:
    parser.error("--sbd is only for voc")
  if args.dataset == "voc":
    from hcjax.data.converters import voc  # pylint: disable=g-import-not-at-top
    info = voc.convert(args.src, args.out, shards=args.shards, sbd=args.sbd,
                       progress=not args.quiet)
  elif args.dataset == "ucf101":
    from hcjax.data.converters import ucf101  # pylint: disable=g-import-not-at-top
    for name, value in (("--shards", args.shards), ("--stride", args.stride), ("--gap", args.gap),
                        ("--max-triplets-per-video", args.max_triplets_per_video),
                        ("--workers", args.workers)):
      if value is not None and value < 1:
        parser.error(f"{name} must be >= 1, got {value}")
    try:
      info = ucf101.convert(
          args.src, args.out, shards=args.shards, layout=args.layout, splits_dir=args.splits,
          split_number=args.split_number or 1, stride=args.stride, gap=args.gap,
          static_psnr=args.static_psnr, max_triplets_per_video=args.max_triplets_per_video,
          dvf_test=args.dvf_test, dvf_masks=args.dvf_masks, workers=args.workers,
          progress=not args.quiet)
    except ucf101.OptionError as e:
      parser.error(str(e))
  elif args.dataset == "deepfashion":
    from hcjax.data.converters import deepfashion  # pylint: disable=g-import-not-at-top
    if args.shards < 1:
      parser.error("--shards must be >= 1")
    info = deepfashion.convert(args.src, args.out, benchmark=args.benchmark, shards=args.shards,
                               skip_missing=args.skip_missing, progress=not args.quiet)
  elif args.dataset == "celeba_spoof":
    from hcjax.data.converters import celeba_spoof  # pylint: disable=g-import-not-at-top
    if args.shards < 1 or (args.margin is not None and args.margin < 0):
      parser.error("--shards must be >= 1 and --margin >= 0")
    info = celeba_spoof.convert(
        args.src, args.out, shards=args.shards,
        margin=0.2 if args.margin is None else args.margin, protocol=args.protocol,
        skip_missing=args.skip_missing, depth=args.depth, reflection=args.reflection,
        progress=not args.quiet)
  else:
    from hcjax.data.converters import celeba  # pylint: disable=g-import-not-at-top
    info = celeba.convert(args.src, args.out, shards=args.shards, progress=not args.quiet)
  print(summarize(info, args.out))
  return 0


def summarize(info: dict, out: str) -> str:
  """A short human-readable account of a converted dataset."""
  lines = [f"{info['dataset']}" + (f" ({info['benchmark']})" if "benchmark" in info else "")
           + f" -> {out}"]
  for split, split_info in info["splits"].items():
    lines.append(f"  {split:<10} {split_info['num_examples']:>7} examples "
                 f"in {len(split_info['files'])} file(s)")
  if "attribute_names" in info:
    lines.append(f"  {len(info['attribute_names'])} attributes: "
                 + " ".join(info["attribute_names"][:6]) + " ...")
  for split, stats in info.get("stats", {}).items():  # ucf101: what the triplet filters dropped
    if stats.get("dropped_static") or stats.get("dropped_cap"):
      lines.append(f"  {split:<10} dropped {stats['dropped_static']} near-static and "
                   f"{stats['dropped_cap']} capped of {stats['candidates']} triplets")
  if "class_names" in info:
    lines.append(f"  {len(info['class_names'])} classes: " + " ".join(info["class_names"])
                 + (f" ({info['ignore_label']} = void)" if "ignore_label" in info else ""))
  return "\n".join(lines)


def _samples(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(
      prog="hcjax samples",
      description="Write a small, deterministic sample set in the original dataset's format.")
  parser.add_argument("dataset", choices=DATASETS_SAMPLES)
  parser.add_argument("--out", required=True)
  parser.add_argument("--num-images", type=int, default=None,
                      help="images to write (celeba 3000, celeba_spoof 1600, deepfashion 2000, "
                      "voc 400 when not given); for ucf101 the number of videos (60)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if args.dataset == "ucf101":
    from hcjax.data.samples import ucf101 as ucf_samples  # pylint: disable=g-import-not-at-top
    summary = ucf_samples.write_sample_set(
        args.out, num_videos=args.num_images if args.num_images is not None else
        ucf_samples.NUM_VIDEOS, seed=args.seed, progress=sys.stderr.isatty())
    print(f"{args.dataset} sample set -> {args.out}: {summary}")
    return 0
  if args.dataset == "voc":
    from hcjax.data.samples import voc as samples  # pylint: disable=g-import-not-at-top
  elif args.dataset == "celeba_spoof":
    from hcjax.data.samples import celeba_spoof as samples  # pylint: disable=g-import-not-at-top
  elif args.dataset == "deepfashion":
    from hcjax.data.samples import deepfashion as samples  # pylint: disable=g-import-not-at-top
  else:
    from hcjax.data.samples import celeba as samples  # pylint: disable=g-import-not-at-top
  num_images = args.num_images if args.num_images is not None else (
      {"celeba": 3000, "celeba_spoof": 1600, "deepfashion": 2000, "voc": 400}[args.dataset])
  summary = samples.write_sample_set(args.out, num_images=num_images, seed=args.seed,
                                     progress=sys.stderr.isatty())
  print(f"{args.dataset} sample set -> {args.out}: {summary}")
  return 0


def _parse_run_flags(command: str, argv: Sequence[str]):
  """absl flags for train / eval / export; returns (config or None, flags)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file(
      "config", None, "configs/NAME.py[:variant]; override keys with --config.key=value",
      flag_values=fv, lock_config=True)
  flags.DEFINE_string("workdir", None, "run directory: checkpoints, metrics, pictures", flag_values=fv)
  flags.DEFINE_string("out", None, "export: output directory (default WORKDIR/export)", flag_values=fv)
  flags.DEFINE_list("platforms", ["cpu"], "export: platforms to lower for (cpu, cuda, rocm, tpu)",
                    flag_values=fv)
  flags.DEFINE_string("coordinator_address", os.environ.get("HCJAX_COORDINATOR_ADDRESS"),
                      "multi-host: host:port of process 0", flag_values=fv)
  flags.DEFINE_integer("num_processes", int(os.environ.get("HCJAX_NUM_PROCESSES", 0)) or None,
                       "multi-host: number of processes", flag_values=fv)
  flags.DEFINE_integer("process_id", int(os.environ.get("HCJAX_PROCESS_ID", -1)),
                       "multi-host: this process's index", flag_values=fv)
  flags.DEFINE_integer("init_timeout", 300, "multi-host: seconds to wait for all processes",
                       flag_values=fv)
  saved_argv = sys.argv
  # config_flags finds `--config.key=value` overrides by looking at sys.argv.
  sys.argv = [f"hcjax {command}"] + list(argv)
  try:
    fv(sys.argv)
  except flags.Error as e:
    raise errors.ConfigError(str(e).splitlines()[0]) from None
  except (FileNotFoundError, OSError) as e:
    raise errors.ConfigError(f"--config: {e}") from None
  except (AttributeError, KeyError) as e:  # an override naming a key the config lacks
    raise errors.ConfigError(f"unknown config key in an override: {e}") from None
  finally:
    sys.argv = saved_argv
  if not fv.workdir:
    raise errors.ConfigError(f"hcjax {command} needs --workdir")
  config = fv.config
  if config is None:
    saved = os.path.join(fv.workdir, "config.json")
    if command == "train" or not os.path.exists(saved):
      raise errors.ConfigError(f"hcjax {command} needs --config (no {saved} to reuse)")
    import ml_collections  # pylint: disable=g-import-not-at-top
    with open(saved) as f:
      config = ml_collections.ConfigDict(json.load(f))
  return config, fv


def _maybe_distributed(fv) -> None:
  """Joins a multi-host job when coordinator settings are given (flags or HCJAX_* variables)."""
  if not fv.coordinator_address:
    return
  import jax  # pylint: disable=g-import-not-at-top
  if fv.num_processes is None or fv.process_id < 0:
    raise errors.ConfigError("--coordinator_address needs --num_processes and --process_id")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(fv.coordinator_address, fv.num_processes, fv.process_id,
                             initialization_timeout=fv.init_timeout)


def _train(argv: Sequence[str]) -> int:
  config, fv = _parse_run_flags("train", argv)
  _maybe_distributed(fv)
  from hcjax import train  # pylint: disable=g-import-not-at-top
  result = train.train_and_evaluate(config, fv.workdir)
  print(f"step {result['step']}: " + train.summarize_metrics(result)
        + ("  (preempted; run the same command to resume)" if result.get("preempted") else ""))
  return 0


def _eval(argv: Sequence[str]) -> int:
  config, fv = _parse_run_flags("eval", argv)
  _maybe_distributed(fv)
  from hcjax import train  # pylint: disable=g-import-not-at-top
  metrics = train.evaluate_workdir(config, fv.workdir)
  print(json.dumps(metrics, indent=2, sort_keys=True))
  return 0


def _export(argv: Sequence[str]) -> int:
  config, fv = _parse_run_flags("export", argv)
  from hcjax import train  # pylint: disable=g-import-not-at-top
  task, model, _, state = train.restore_for_inference(config, fv.workdir)
  out = train.export_state(task, model, state, fv.out or os.path.join(fv.workdir, "export"),
                           platforms=tuple(fv.platforms))
  print(f"exported to {out}")
  return 0


def _segment(argv: Sequence[str]) -> int:
  from hcjax import segment  # pylint: disable=g-import-not-at-top
  return segment.main(argv)


def _spoof(argv: Sequence[str]) -> int:
  from hcjax import spoof  # pylint: disable=g-import-not-at-top
  return spoof.main(argv)


def _fashion(argv: Sequence[str]) -> int:
  from hcjax import fashion  # pylint: disable=g-import-not-at-top
  return fashion.fashion_main(argv)


def _retrieve(argv: Sequence[str]) -> int:
  from hcjax import fashion  # pylint: disable=g-import-not-at-top
  return fashion.retrieve_main(argv)


def _interpolate(argv: Sequence[str]) -> int:
  from hcjax import interpolate  # pylint: disable=g-import-not-at-top
  return interpolate.interpolate_main(argv)


def _slowmo(argv: Sequence[str]) -> int:
  from hcjax import interpolate  # pylint: disable=g-import-not-at-top
  return interpolate.slowmo_main(argv)


COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "train": (_train, "train and evaluate: --config configs/x.py[:variant] --workdir W"),
    "eval": (_eval, "evaluate a workdir's latest checkpoint: --workdir W"),
    "export": (_export, "StableHLO + parameters + loader: --workdir W --out DIR"),
    "convert": (_convert, "original dataset files -> sharded TFRecords"),
    "samples": (_samples, "write an embedded sample set in the original format"),
    "segment": (_segment, "label maps from a segmentation workdir: --workdir W a.jpg -o out.png"),
    "spoof": (_spoof, "spoof probability of faces: --workdir W face.jpg [--bbox x,y,w,h]"),
    "fashion": (_fashion, "category, attributes and landmarks: --workdir W garment.jpg -o out.png"),
    "retrieve": (_retrieve, "in-shop retrieval: --workdir W --gallery DIR query.jpg -o strip.png"),
    "interpolate": (_interpolate, "the frame between two: --workdir W a.png b.png -o mid.png"),
    "slowmo": (_slowmo, "slow motion: --workdir W in.mp4 --factor 4 -o out.mp4 (or .gif)"),
}


def main(argv: Sequence[str]) -> int:
  if not argv or argv[0] in ("-h", "--help", "help"):
    print("usage: hcjax COMMAND [options]\n\ncommands:")
    for name, (_, text) in COMMANDS.items():
      print(f"  {name:<12} {text}")
    print("\n`hcjax COMMAND --help` for a command's options.")
    return 0
  command = argv[0]
  if command not in COMMANDS:
    print(f"hcjax: error: unknown command {command!r}; choose from {', '.join(COMMANDS)}",
          file=sys.stderr)
    return 2
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                      datefmt="%H:%M:%S")
  try:
    return COMMANDS[command][0](list(argv[1:]))
  except USER_ERRORS as e:
    print(f"hcjax: error: {e}", file=sys.stderr)
    return 2
  except FloatingPointError as e:  # the NaN guard: the last good checkpoint is kept
    print(f"hcjax: stopped: {e}", file=sys.stderr)
    return 3


def run() -> None:
  """Console-script entry point."""
  sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
  run()
