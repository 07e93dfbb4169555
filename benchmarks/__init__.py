"""The benchmark scripts and their shared harness (``benchmarks.harness``); not installed with the
packages. Run a script from the repository root: ``python benchmarks/compare_models.py --quick``."""
