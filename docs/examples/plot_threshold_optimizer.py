"""
fairlearn's ``ThresholdOptimizer`` on top of a fitted mitigator
================================================================

The mitigator needs no group labels. Where a small labelled set is available, fairlearn's post-processing can
still be added on top: :class:`fairlearn.postprocessing.ThresholdOptimizer` takes the fitted mitigator as a
prefit estimator, reads its ``predict_proba`` on image arrays, and picks group-specific thresholds for
equalized odds on that labelled set. Here the labelled set is a balanced validation split, separate from the
test split.
"""

# %%
import matplotlib.pyplot as plt
import pandas as pd
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.frozen import FrozenEstimator

from aimfair_plugin.datasets import make_colored_mnist
from aimfair_plugin.estimators import ImageClassifier, SelectiveFinetuneMitigator
from aimfair_plugin.metrics import fairness_report
from aimfair_plugin.synth import RenderedDigitsProvider

data = make_colored_mnist(n_train=2000, n_test=600, minority_share=0.04, image_size=32, random_state=0)
X_val, y_val, s_val = data.X_test[:200], data.y_test[:200], data.s_test[:200]
X_test, y_test, s_test = data.X_test[200:], data.y_test[200:], data.s_test[200:]

erm = ImageClassifier(width=8, max_epochs=8, lr=0.05, batch_size=64, lr_milestones=(6,), lr_gamma=0.1,
                      augment=False, random_state=0).fit(data.X_train, data.y_train)
mitigator = SelectiveFinetuneMitigator(RenderedDigitsProvider(), estimator=FrozenEstimator(erm), finetune_epochs=5,
                                       finetune_lr=0.001, finetune_batch_size=64, random_state=0)
mitigator.fit(data.X_train, data.y_train)

# %%
post = ThresholdOptimizer(estimator=mitigator, prefit=True, constraints="equalized_odds",
                          predict_method="predict_proba")
post.fit(X_val, y_val, sensitive_features=s_val)
predictions = {"ERM": erm.predict(X_test), "mitigator": mitigator.predict(X_test),
               "mitigator + ThresholdOptimizer": post.predict(X_test, sensitive_features=s_test, random_state=0)}
table = pd.DataFrame({name: fairness_report(y_test, pred, sensitive_features=s_test)[["ACC", "WST", "EO"]]
                      for name, pred in predictions.items()}).T
print(table.round(2))

# %%
ax = table.plot.bar(figsize=(6, 3.5), rot=0)
ax.set(ylabel="%", title="Test metrics (EO: lower is better)")
ax.legend(loc="upper right", fontsize=8)
plt.tight_layout()
plt.show()
