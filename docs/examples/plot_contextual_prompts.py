"""
Contextual prompts and the digits they render
=============================================

AIM-Fair generates its synthetic images from *contextual* prompts: each prompt states the target and the
protected attribute of its (y, s) cell and varies everything else, so the balanced set covers the context the
real images have. :class:`~aimfair_plugin.synth.ContextualPromptBuilder` writes them;
:class:`~aimfair_plugin.synth.RenderedDigitsProvider`, the package's offline stand-in for a diffusion model,
typesets digits from them on the embedded benchmark's colours. One plain prompt per cell gives a narrow set.
"""

# %%
import matplotlib.pyplot as plt

from aimfair_plugin.synth import ContextualPromptBuilder, RenderedDigitsProvider, balanced_group_counts

contextual = ContextualPromptBuilder(5, ("red", "blue"), dataset="digits", n_prompts=8,
                                     random_state=0).build()
plain = ContextualPromptBuilder(5, ("red", "blue"), dataset="digits", plain=True).build()
for cell in [(0, 0), (1, 1)]:
    print(cell, "contextual:", contextual[cell][:2])
    print(cell, "plain:     ", plain[cell])

# %%
counts = balanced_group_counts(32)
fig, axes = plt.subplots(2, 16, figsize=(12, 2))
for row, (name, prompts) in enumerate({"contextual": contextual, "plain": plain}.items()):
    X, y, s = RenderedDigitsProvider(prompts, image_size=32).sample(counts, random_state=0)
    for ax, image, label in zip(axes[row], X[::2], y[::2]):
        ax.imshow(image.transpose(1, 2, 0))
        ax.set(xticks=[], yticks=[])
    axes[row, 0].set_ylabel(name, fontsize=8)
fig.suptitle("Rendered digits (top: contextual prompts, bottom: one plain prompt per cell)", fontsize=9)
plt.show()
