"""Recipes: the one training loop, and the data, model and objective of each trainable
kind, built from configuration (no tracking)."""
