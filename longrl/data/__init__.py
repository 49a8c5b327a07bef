"""Video decoding and sampling, datasets, prompt rendering and synthetic long-video tasks."""
