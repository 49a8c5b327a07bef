"""Step: segment. `python longvideo-reason/segment.py --config FILE [--force] [key=value ...]` (see README.md)."""

from lvreason.cli import main

if __name__ == "__main__":
    main("segment")
