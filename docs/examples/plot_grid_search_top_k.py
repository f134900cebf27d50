"""
Choosing ``top_k`` with ``GridSearchCV`` and a fairness scorer
==============================================================

:func:`~aimfair_plugin.metrics.fairness_scorer` is a scikit-learn scorer that receives the protected attribute
through metadata routing: the search scores each candidate's worst-group accuracy on its validation fold while
``fit`` never sees the attribute. The candidates of a fold share one pre-training (the mitigator's cache), so
the grid costs one ERM fit per fold plus the fine-tuning runs.
"""

# %%
import matplotlib.pyplot as plt
import pandas as pd
import sklearn
from sklearn.model_selection import GridSearchCV

from aimfair_plugin.datasets import make_colored_mnist
from aimfair_plugin.estimators import ImageClassifier, SelectiveFinetuneMitigator, SelectiveMask
from aimfair_plugin.metrics import fairness_scorer
from aimfair_plugin.synth import RenderedDigitsProvider

sklearn.set_config(enable_metadata_routing=True)
data = make_colored_mnist(n_train=1600, n_test=200, minority_share=0.04, image_size=32, random_state=0)
mitigator = SelectiveFinetuneMitigator(
    RenderedDigitsProvider(),
    estimator=ImageClassifier(width=8, max_epochs=6, lr=0.05, batch_size=64, lr_milestones=(5,), lr_gamma=0.1,
                              augment=False, random_state=0),
    strategy=SelectiveMask(), finetune_epochs=3, finetune_lr=0.001, finetune_batch_size=64, random_state=0)
# The strategy carries top_k: search it with scikit-learn's nested name.
search = GridSearchCV(mitigator, {"strategy__top_k": [20, 45, 62]}, scoring=fairness_scorer("WST"), cv=2)
search.fit(data.X_train, data.y_train, sensitive_features=data.s_train)  # s reaches the scorer only

# %%
results = pd.DataFrame(search.cv_results_)[["param_strategy__top_k", "mean_test_score", "std_test_score"]]
print(results.to_string(index=False))
print("chosen top_k:", search.best_params_["strategy__top_k"])

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.errorbar(results["param_strategy__top_k"].astype(int), results["mean_test_score"], yerr=results["std_test_score"],
            marker="o", capsize=3)
ax.set(xlabel="top_k (of 62 tensors)", ylabel="worst-group accuracy on the folds (%)",
       title="GridSearchCV over top_k")
fig.tight_layout()
plt.show()
