"""One adapter per model family behind a registry, and builders of tiny local model directories."""
