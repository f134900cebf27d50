"""Demo: ERM on the embedded biased coloured MNIST, and its fairness report.

Run with ``python -m aimfair_plugin._demo`` (or ``aimfair-demo``).
"""

import argparse
import time

from .datasets import make_colored_mnist
from .estimators import ImageClassifier
from .metrics import fairness_report, group_accuracy_table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minority-share", type=float, default=0.04,
                        help="share of the minority colour within each class (default 0.04)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    data = make_colored_mnist(minority_share=args.minority_share, image_size=32, random_state=args.seed)
    print(data.DESCR)
    start = time.perf_counter()
    model = ImageClassifier(width=16, max_epochs=args.epochs, lr=0.05, batch_size=64, lr_milestones=(10,),
                            lr_gamma=0.1, augment=False, random_state=args.seed, verbose=1)
    model.fit(data.X_train, data.y_train)
    print(f"ERM (ResNet-18, width 16) trained in {time.perf_counter() - start:.1f} s "
          f"on {model.net_.device}.\n")
    y_pred = model.predict(data.X_test)
    print("Cell accuracies on the balanced test set (%, rows y = target, columns s = colour):")
    print(group_accuracy_table(data.y_test, y_pred, sensitive_features=data.s_test).round(2), "\n")
    print("Fairness report (ACC..EOD in %, ratios in [0, 1]):")
    print(fairness_report(data.y_test, y_pred, sensitive_features=data.s_test).round(3).to_string())


if __name__ == "__main__":
    main()
