"""``python -m longrl.eval --model DIR --data FILE``: accuracy of a model directory on a benchmark file."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from longrl.config.schema import DataConfig, RolloutConfig
from longrl.config.validate import BAD_ROW_POLICIES
from longrl.eval.benchmarks import FORMATS
from longrl.eval.runner import evaluate, format_report
from longrl.inference import BACKENDS


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m longrl.eval", description=__doc__.split(": ", 1)[1])
    parser.add_argument("--model", required=True, help="Hugging Face model directory (e.g. a merged checkpoint)")
    parser.add_argument("--data", required=True, help="benchmark rows: .jsonl, .json or .parquet")
    parser.add_argument("--video-dir", help="root of relative video paths (default: the data file's directory); "
                                            "VideoMME videos are <video-dir>/<videoID>.mp4")
    parser.add_argument("--format", default="auto", choices=["auto", *FORMATS], help="row layout (default: detected)")
    parser.add_argument("--thinking", action=argparse.BooleanOptionalAction, default=True,
                        help="ask for <think>...</think><answer>...</answer> (default) or for the answer directly")
    frames = parser.add_mutually_exclusive_group()
    frames.add_argument("--num-video-frames", type=int,
                        help=f"frames per video, spread evenly (default {RolloutConfig.num_video_frames})")
    frames.add_argument("--fps", type=float, help="frames per second of video instead, capped by --max-video-frames")
    parser.add_argument("--max-video-frames", type=int, default=RolloutConfig.max_video_frames)
    parser.add_argument("--max-pixels", type=int, default=DataConfig.max_pixels, help="pixel budget of one frame")
    parser.add_argument("--backend", default="hf", choices=BACKENDS)
    parser.add_argument("--batch-size", type=int, default=8, help="requests per generation call")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--output-dir", help="default: outputs/eval/<model path tail>--<path hash>/<data file stem>, "
                                              "so every checkpoint gets its own folder")
    parser.add_argument("--limit", type=int, help="evaluate only the first N rows")
    parser.add_argument("--on-bad-row", default=DataConfig.on_bad_row, choices=BAD_ROW_POLICIES,
                        help="as data.on_bad_row in training: 'error' stops at the first row that cannot be read "
                             "(naming file and row); 'skip' leaves it out of the scores and counts it")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let the model directory's own Python code run (refused without it)")
    parser.add_argument("--constant-frames", action="store_true",
                        help="control: replace every frame by the video's per-pixel median frame; a model that uses "
                             "the video should then score near chance (printed)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    result = evaluate(args.model, args.data, video_dir=args.video_dir, data_format=args.format, thinking=args.thinking,
                      num_video_frames=args.num_video_frames, fps=args.fps, max_video_frames=args.max_video_frames,
                      max_pixels=args.max_pixels, backend=args.backend, batch_size=args.batch_size,
                      max_new_tokens=args.max_new_tokens, output_dir=args.output_dir, limit=args.limit,
                      on_bad_row=args.on_bad_row, trust_remote_code=args.trust_remote_code,
                      constant_frames=args.constant_frames)
    print(format_report(result.metrics))
    print(f"metrics: {result.output_dir / 'metrics.json'}\ngenerations: {result.output_dir / 'generations.jsonl'}")


if __name__ == "__main__":
    main()
