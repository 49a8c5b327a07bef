"""Step: caption. `python longvideo-reason/caption.py --config FILE [--force] [key=value ...]` (see README.md)."""

from lvreason.cli import main

if __name__ == "__main__":
    main("caption")
