"""Benchmark evaluation of trained model directories."""
