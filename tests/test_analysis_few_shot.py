import numpy as np
import pytest

import zoo
from zoo.data import episodes


class OracleClassifier:
    """Queries are rows [answerable, label]: answerable ones get their label, the others class 0 (always wrong)."""

    def classify(self, queries, memory, memory_labels, num_classes):
        predicted = np.where(queries[:, 0] == 1.0, queries[:, 1], 0).astype(int)
        return np.eye(num_classes)[predicted]


def labelled_episodes(hit_rates):
    """Episodes of 4 classes x 2 shots whose queries are marked answerable (pixel 0) at the given rates."""
    for rate in hit_rates:
        labels = np.array([1, 2, 3, 1, 2, 3, 1, 2, 3, 1])
        queries = np.zeros((10, 2), np.float32)
        queries[:, 1] = labels
        queries[: int(rate * 10), 0] = 1.0
        yield {
            "queries": queries, "query_labels": labels,
            "memory": np.zeros((8, 2), np.float32), "memory_labels": np.repeat(np.arange(4), 2),
        }


def test_few_shot_accuracy_counts_argmax_hits():
    result = zoo.analysis.few_shot_accuracy(OracleClassifier(), labelled_episodes([1.0, 0.5, 0.0, 0.3]))
    assert result["accuracy"] == pytest.approx(0.45)
    assert result["stderr"] == pytest.approx(np.std([1.0, 0.5, 0.0, 0.3], ddof=1) / 2)
    assert (result["episodes"], result["queries"], result["ways"], result["shots"]) == (4, 40, 4, 2)
    uneven = {**next(labelled_episodes([1.0])), "memory_labels": np.array([0, 0, 0, 1, 1, 2, 3, 3])}
    assert zoo.analysis.few_shot_accuracy(OracleClassifier(), [uneven])["shots"] is None  # a support set all the same
    assert zoo.analysis.few_shot_accuracy(OracleClassifier(), labelled_episodes([1.0, 0.0]), max_episodes=1)["accuracy"] == 1.0
    with pytest.raises(ValueError, match="nothing to classify"):
        zoo.analysis.few_shot_accuracy(OracleClassifier(), [])


@pytest.mark.parametrize("change, message", [
    # [B, 1] labels used to broadcast against the [B] predictions: a [B, B] comparison, an accuracy near 1 / ways.
    (dict(query_labels=np.array([1, 2, 3, 1, 2, 3, 1, 2, 3, 1])[:, None]),
     r"query_labels must be integers of shape \[10\], got dtype int64 and shape \(10, 1\)"),
    (dict(query_labels=np.array([1, 2, 3, 1, 2, 3, 1, 2, 3, 4])), "query_labels must be < num_classes=4"),
    (dict(memory_labels=np.array([0, 0, 0, 1, 1, 2, 3])), r"memory_labels must be integers of shape \[8\]"),
])
def test_few_shot_accuracy_refuses_labels_that_do_not_fit(change, message):
    episode = {**next(labelled_episodes([1.0])), **change}
    with pytest.raises(ValueError, match=message):
        zoo.analysis.few_shot_accuracy(OracleClassifier(), [episode])


def test_vma_few_shot_accuracy_and_memory_size_sweep():
    model = zoo.VMA(input_shape=(8, 8, 1), hidden_units=(16,), latent_dim=2, matching_dim=4, seed=0)
    rng = np.random.default_rng(0)
    images = (rng.random((60, 8, 8, 1)) < 0.5).astype(np.float32)
    labels = np.repeat(np.arange(10), 6)

    def make(classes, per_class):
        return episodes.class_episodes(images, labels, num_classes=classes, num_targets=1, num_memory=per_class,
                                       num_episodes=2, seed=3)

    rows = zoo.analysis.memory_size_sweep(model, make, num_classes=(1, 3), examples_per_class=(4,), num_samples=20)
    assert [(r["num_classes"], r["examples_per_class"], r["memory_entries"]) for r in rows] == [(1, 4, 4), (3, 4, 12)]
    assert [r["examples"] for r in rows] == [2, 6]
    # The sweep's NLL is the mean of the model's own log p(x | memory) with the same seeds.
    expected = -np.mean([
        model.log_likelihood((e["x"], e["memory"]), num_samples=20, seed=[0, i]).numpy()
        for i, e in enumerate(make(3, 4))
    ])
    assert rows[1]["nll_nats"] == pytest.approx(expected, rel=1e-5)



def test_vma_few_shot_accuracy_by_hand():
    # h^q = h^m scaled up: q(a|x) puts ~all its mass on the stored copy of x (Cauchy-Schwarz), so a
    # query is classified by its copy's label. Episode 1 labels every copy correctly (accuracy 1),
    # episode 2 gives every copy the next class's label (accuracy 0): mean 0.5, stderr 0.5.
    model = zoo.VMA(input_shape=(8, 8, 1), hidden_units=(64,), latent_dim=2, matching_dim=16, seed=0)
    model.address.memory_embedding.set_weights([10.0 * w for w in model.address.memory_embedding.get_weights()])
    images = (np.random.default_rng(1).random((4, 8, 8, 1)) < 0.5).astype(np.float32)
    labels = np.array([0, 1, 2, 3])

    def episode(memory_labels):
        return {"queries": images, "query_labels": labels, "memory": images, "memory_labels": memory_labels}

    result = zoo.analysis.few_shot_accuracy(model, [episode(labels), episode((labels + 1) % 4)])
    assert (result["accuracy"], result["stderr"]) == (0.5, 0.5)
    assert (result["episodes"], result["queries"], result["ways"], result["shots"]) == (2, 8, 4, 1)
