"""
Inspecting a mask: which tensors AIM-Fair fine-tunes
=====================================================

:meth:`~aimfair_plugin.estimators.SelectiveFinetuneMitigator.select` runs every step of a fit but the
fine-tuning: pre-training, the synthetic draws and the per-tensor mean gradients on the real data R, the biased
synthetic set S1 and the balanced set S2. :func:`~aimfair_plugin.inspection.plot_gradient_gaps` draws the
domain gap against the bias gap of every tensor; the selected ones (small domain gap, large bias gap) are
filled.
"""

# %%
import matplotlib.pyplot as plt

from aimfair_plugin.datasets import make_colored_mnist
from aimfair_plugin.estimators import ImageClassifier, SelectiveFinetuneMitigator, SelectiveMask
from aimfair_plugin.inspection import plot_gradient_gaps
from aimfair_plugin.synth import RenderedDigitsProvider

data = make_colored_mnist(n_train=800, n_test=200, minority_share=0.04, image_size=32, random_state=0)
erm = ImageClassifier(width=8, max_epochs=4, lr=0.05, batch_size=64, lr_milestones=(3,), lr_gamma=0.1,
                      augment=False, random_state=0)

# %%
# The paper's criterion (absolute differences of mean gradients) and the package's default (each tensor's gaps
# divided by its own gradient scale), both with the paper's intersection of the two top-k lists.
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for ax, criterion in zip(axes, ("abs_diff", "normalized")):
    mitigator = SelectiveFinetuneMitigator(RenderedDigitsProvider(), estimator=erm,
                                           strategy=SelectiveMask(top_k=45, criterion=criterion),
                                           random_state=0).select(data.X_train, data.y_train)
    plot_gradient_gaps(mitigator, ax=ax, title=f"{criterion}: {mitigator.n_selected_} tensors")
    report = mitigator.mask_report_
    print(f"{criterion}: {report['n_selected']} of {len(mitigator.selection_mask_)} tensors, "
          f"Spearman(domain gap, bias gap) = {report['spearman_domain_vs_bias']:.2f}, "
          f"smallest possible intersection {report['min_possible_intersection']}")
fig.tight_layout()

# %%
# The per-tensor table behind the plot:
print(mitigator.gradient_gaps_.head(8).round(4).to_string())
plt.show()
