"""Step: filter. `python longvideo-reason/filter.py --config FILE [--force] [key=value ...]` (see README.md)."""

from lvreason.cli import main

if __name__ == "__main__":
    main("filter")
