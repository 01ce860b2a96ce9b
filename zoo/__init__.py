"""prefzoo runner: CLI, configs, logging, comparisons and plots."""
