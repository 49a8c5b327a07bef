"""Advantage estimators, policy losses, KL penalties and filters as pure tensor functions."""
