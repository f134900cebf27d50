"""
Quickstart: ERM against the mitigator, with a fairness report
==============================================================

Train a biased ResNet on the embedded coloured MNIST (the colour of the background is the protected
attribute, and the rare colour is rare within each class), then fine-tune it with
:class:`~aimfair_plugin.estimators.SelectiveFinetuneMitigator` on rendered synthetic digits. Neither fit
reads the protected attribute; the report does, on a test set balanced over the four (y, s) cells.
"""

# %%
# Data: 2,000 biased training images (4 % of each class has the rare colour), 32 px.
import matplotlib.pyplot as plt
import pandas as pd
from sklearn.frozen import FrozenEstimator

from aimfair_plugin.datasets import make_colored_mnist
from aimfair_plugin.estimators import ImageClassifier, SelectiveFinetuneMitigator
from aimfair_plugin.metrics import fairness_report, group_accuracy_table
from aimfair_plugin.synth import RenderedDigitsProvider

data = make_colored_mnist(n_train=2000, n_test=400, minority_share=0.04, image_size=32, random_state=0)
erm = ImageClassifier(width=8, max_epochs=8, lr=0.05, batch_size=64, lr_milestones=(6,), lr_gamma=0.1,
                      augment=False, random_state=0)
erm.fit(data.X_train, data.y_train)

# %%
# The mitigator starts from the fitted ERM model (scikit-learn's ``FrozenEstimator``: prefit, never refitted),
# draws biased and balanced synthetic sets from the provider, selects tensors and fine-tunes them; its BatchNorm
# statistics are re-estimated on the real training images at the end (``batchnorm="real"``, the default).
mitigator = SelectiveFinetuneMitigator(RenderedDigitsProvider(), estimator=FrozenEstimator(erm),
                                       finetune_epochs=5, finetune_lr=0.001, finetune_batch_size=64,
                                       random_state=0)
mitigator.fit(data.X_train, data.y_train)
print(f"{mitigator.n_selected_} of {len(mitigator.selection_mask_)} tensors fine-tuned")

# %%
# The fairness report on the balanced test set: accuracy, worst-group accuracy, equalized odds and more.
reports = pd.DataFrame({name: fairness_report(data.y_test, model.predict(data.X_test),
                                               sensitive_features=data.s_test)
                        for name, model in {"ERM": erm, "mitigator": mitigator}.items()})
print(reports.round(2))

# %%
# Cell accuracies (rows: target y, columns: colour s). The rare cells are where ERM fails.
fig, axes = plt.subplots(1, 2, figsize=(7, 3), sharey=True)
for ax, (name, model) in zip(axes, {"ERM": erm, "mitigator": mitigator}.items()):
    table = group_accuracy_table(data.y_test, model.predict(data.X_test), sensitive_features=data.s_test)
    ax.imshow(table.to_numpy(), vmin=0, vmax=100, cmap="viridis")
    for (i, j), value in pd.DataFrame(table.to_numpy()).stack().items():
        ax.text(j, i, f"{value:.0f}", ha="center", va="center", color="white")
    ax.set(title=name, xticks=[0, 1], yticks=[0, 1], xlabel="s (colour)", ylabel="y (digit >= 5)")
fig.tight_layout()
plt.show()
