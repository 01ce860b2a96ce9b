"""Hyperparameters per algorithm: ``<algo>.yml`` keyed by env id with a ``default`` key (read by ``prefzoo.zoo.config``)."""
