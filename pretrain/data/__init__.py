"""Datasets for pretraining."""
