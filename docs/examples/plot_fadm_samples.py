"""
FADM: generating fair tabular data with a guided diffusion model
================================================================

:class:`~aimfair_plugin.synth.FairTabularDiffusion` learns a diffusion model of biased rows together with a
label classifier and a sensitive-attribute classifier on noisy rows, then samples with classifier guidance
toward a chosen label and entropy guidance that makes the sensitive attribute hard to predict. A downstream
classifier is trained on generated rows only and tested on real ones.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from aimfair_plugin.datasets import load_adult
from aimfair_plugin.metrics import fairness_report
from aimfair_plugin.synth import FairTabularDiffusion

adult = load_adult()
columns = ["age", "education-num", "hours-per-week", "capital-gain"]
rng = np.random.RandomState(0)
rows = rng.choice(len(adult.X_train), 4000, replace=False)
X = adult.X_train.iloc[rows][columns].astype(float).reset_index(drop=True)
y, s = adult.y_train[rows], adult.sex_train[rows]

samples = {}
for guidance in (0.0, 2.0):
    model = FairTabularDiffusion(n_steps=50, max_epochs=15, hidden=64, n_layers=2, meta_learning=False,
                                 guidance_fair=guidance, random_state=0)
    samples[guidance] = model.fit(X, y, sensitive_features=s).sample(2000, random_state=0)

# %%
# Train a logistic regression on each generated set, test it on the real test rows.
X_test = adult.X_test[columns].astype(float)
scale = X.mean(), X.std()
reports = {}
for guidance, rows_ in samples.items():
    clf = LogisticRegression(max_iter=1000).fit((rows_[columns] - scale[0]) / scale[1], rows_[model.target_name_])
    reports[f"guidance_fair={guidance:g}"] = fairness_report(
        adult.y_test, clf.predict((X_test - scale[0]) / scale[1]), sensitive_features=adult.sex_test
    )[["ACC", "DP_ratio", "EOp_ratio"]]
print(pd.DataFrame(reports).T.round(3))

# %%
fig, axes = plt.subplots(1, len(columns), figsize=(12, 3))
for ax, column in zip(axes, columns):
    ax.hist(X[column], bins=30, density=True, alpha=0.5, label="real")
    ax.hist(samples[2.0][column], bins=30, density=True, alpha=0.5, label="generated")
    ax.set_title(column)
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()
