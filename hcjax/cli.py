"""The `hcjax` command: train | eval | export | convert | samples.

Data commands take argparse options; the training commands take absl flags with
ml_collections config overrides (`--config configs/x.py:variant --config.key=value`).
Known user errors print one line (`hcjax: error: ...`) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from hcjax.data import errors as data_errors

DATASETS_CONVERT = ("celeba",)
DATASETS_SAMPLES = ("celeba",)

# Errors that are the user's to fix: shown as one line, never as a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    data_errors.AnnotationError, data_errors.CorruptRecordError, data_errors.ImageDecodeError,
    data_errors.MissingDataError, data_errors.ShardingError,
)


def _convert(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(
      prog="hcjax convert", description="Original dataset files -> sharded TFRecords.")
  parser.add_argument("dataset", choices=DATASETS_CONVERT)
  parser.add_argument("--src", required=True, help="folder holding the original files")
  parser.add_argument("--out", required=True, help="output folder for TFRecords")
  parser.add_argument("--shards", type=int, default=8, help="files per split")
  parser.add_argument("--quiet", action="store_true", help="no progress bar")
  args = parser.parse_args(argv)
  from hcjax.data.converters import celeba  # pylint: disable=g-import-not-at-top
  info = celeba.convert(args.src, args.out, shards=args.shards, progress=not args.quiet)
  print(summarize(info, args.out))
  return 0


def summarize(info: dict, out: str) -> str:
  """A short human-readable account of a converted dataset."""
  lines = [f"{info['dataset']} -> {out}"]
  for split, split_info in info["splits"].items():
    lines.append(f"  {split:<10} {split_info['num_examples']:>7} examples "
                 f"in {len(split_info['files'])} file(s)")
  if "attribute_names" in info:
    lines.append(f"  {len(info['attribute_names'])} attributes: "
                 + " ".join(info["attribute_names"][:6]) + " ...")
  return "\n".join(lines)


def _samples(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(
      prog="hcjax samples",
      description="Write a small, deterministic sample set in the original dataset's format.")
  parser.add_argument("dataset", choices=DATASETS_SAMPLES)
  parser.add_argument("--out", required=True)
  parser.add_argument("--num-images", type=int, default=3000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  from hcjax.data.samples import celeba  # pylint: disable=g-import-not-at-top
  summary = celeba.write_sample_set(args.out, num_images=args.num_images, seed=args.seed,
                                    progress=sys.stderr.isatty())
  print(f"celeba sample set -> {args.out}: {summary}")
  return 0


COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "convert": (_convert, "original dataset files -> sharded TFRecords"),
    "samples": (_samples, "write an embedded sample set in the original format"),
}


def main(argv: Sequence[str]) -> int:
  if not argv or argv[0] in ("-h", "--help", "help"):
    print("usage: hcjax COMMAND [options]\n\ncommands:")
    for name, (_, text) in COMMANDS.items():
      print(f"  {name:<10} {text}")
    print("\n`hcjax COMMAND --help` for a command's options.")
    return 0
  command = argv[0]
  if command not in COMMANDS:
    print(f"hcjax: error: unknown command {command!r}; choose from {', '.join(COMMANDS)}",
          file=sys.stderr)
    return 2
  try:
    return COMMANDS[command][0](list(argv[1:]))
  except USER_ERRORS as e:
    print(f"hcjax: error: {e}", file=sys.stderr)
    return 2


def run() -> None:
  """Console-script entry point."""
  sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
  run()
