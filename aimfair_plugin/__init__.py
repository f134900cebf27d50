"""aimfair-plugin: AIM-Fair selective fine-tuning, baselines and fairness reports for scikit-learn / fairlearn."""

__version__ = "0.1.0.dev0"
