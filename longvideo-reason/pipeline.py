"""Every step in order, each skipped when done: `python longvideo-reason/pipeline.py --config FILE [key=value ...]`."""

from lvreason.cli import main

if __name__ == "__main__":
    main()
