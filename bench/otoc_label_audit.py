"""1T1C pseudo-label audit (analysis only): where a run's pseudo labels and its two networks are right, per class.

For one 1T1C checkpoint (``RUN/checkpoints/step_*.pt`` of ``wsseg train --method otoc``) and its dataset:

1. the pseudo labels stored in the checkpoint (the Y_t that round trained on), per ground-truth class: share of
   the train points, covered (any pseudo label), correct, precision of the points labelled with the class;
2. on the super-voxels that Y_0 does not touch (no click), per majority ground-truth class: how often Θ's and
   R's pooled argmax are right, their median peak probability, and how many pass the pseudo-label rule;
3. R's class prototypes (memory bank, or the "w/o MB" running means): for each class, the other class whose
   prototype is closest and their cosine.  With τ = 0.07 two unit prototypes at cosine c separate R's logits
   by at most sqrt(2 - 2c) / τ, so c >= 0.98 leaves R unable to tell the two classes apart (at most 2.9 nats).

Ground truth is read here only to score; nothing is written.  Usage::

    python bench/otoc_label_audit.py --data DATA --checkpoint RUN/checkpoints/last.pt [--seed 0] [--scenes 6]

``--seed`` must be the clicks seed of the run (``simulate_clicks``, as in ``bench/otoc.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from wsseg_training.checkpoint import CheckpointError, load_checkpoint
from wsseg_training.data.dataset import Dataset
from wsseg_training.evaluation.metrics import ConfusionMatrix
from wsseg_training.labels import simulate_clicks
from wsseg_training.methods.otoc import initial_pseudo_labels
from wsseg_training.methods.otoc.inference import (
    OtocFullPredictor,
    module_or_none,
    propagate_outputs,
    prototypes_of,
    scene_outputs,
)
from wsseg_training.methods.otoc.relation import relation_probabilities


def stored_label_table(checkpoint: Path, dataset: Dataset) -> list[str]:
    """Markdown rows of part 1 from the pseudo labels a checkpoint carries (``training.method.labels``)."""
    state = load_checkpoint(checkpoint)
    labels = state.get("training", {}).get("method", {}).get("labels")
    if labels is None:
        raise SystemExit(f"{checkpoint}: no pseudo labels in it (training.method.labels); pass a checkpoint of a "
                         "`wsseg train --method otoc` run (RUN/checkpoints/*.pt), not model.pt")
    # unlabelled points (-1) land in ``missed``: row sums = covered, diagonal = correct, column sums = labelled
    matrix = ConfusionMatrix(dataset.classes.num_classes)
    for name, stored in labels.items():
        matrix.add(dataset.load(name).semantic, stored.numpy())
    covered, labelled, correct = matrix.matrix.sum(1), matrix.matrix.sum(0), matrix.true_positives()
    truth_n = covered + matrix.missed
    rows = ["| class | share % | covered % | correct % | precision % |", "|---|---:|---:|---:|---:|"]
    for c, name in enumerate(dataset.classes.names):
        n = max(truth_n[c], 1)
        rows.append(f"| {name} | {100 * truth_n[c] / truth_n.sum():.1f} | {100 * covered[c] / n:.1f} | "
                    f"{100 * correct[c] / n:.1f} | {100 * correct[c] / max(labelled[c], 1):.1f} |")
    return rows


def unclicked_node_table(predictor: OtocFullPredictor, dataset: Dataset, seed: int, scenes: int) -> list[str]:
    """Markdown rows of part 2: Θ / R / rule on the super-voxels without a click of the first ``scenes`` rooms."""
    config, classes = predictor.config, dataset.classes.num_classes
    relation = module_or_none(predictor.modules, "relation")
    prototypes = prototypes_of(predictor.modules)
    train = dataset.scene_names("train")
    clicks = simulate_clicks(dataset, train, seed=seed)
    rows: list[np.ndarray] = []  # per node: truth, Θ argmax, Θ peak, R argmax, R peak, kept, label
    for name in train[:scenes]:
        scene = dataset.load(name)
        y0 = initial_pseudo_labels(clicks.point_labels(name, scene.num_points), scene.supervoxel,  # type: ignore[arg-type]
                                   scene.xyz, dataset.classes, config)
        outputs = scene_outputs(predictor.model, relation, predictor.preprocess, scene.xyz, scene.rgb,
                                scene.intensity, torch.device("cpu"))
        propagation = propagate_outputs(outputs, scene.supervoxel, scene.xyz, scene.rgb, config,  # type: ignore[arg-type]
                                        prototypes)
        segments = propagation.nodes.segments
        truth = segments.majority(torch.from_numpy(scene.semantic.astype(np.int64)), classes)
        clicked = segments.majority(torch.from_numpy(np.where(y0 >= 0, 1, -1)), 2) == 1
        theta = propagation.nodes.prob
        rel = theta if relation is None else relation_probabilities(
            propagation.nodes.relation_embedding, prototypes, config.temperature)  # type: ignore[arg-type]
        columns = (truth, theta.argmax(1), theta.max(1).values, rel.argmax(1), rel.max(1).values, propagation.keep,
                   propagation.labels)
        rows.append(torch.stack([c.double() for c in columns], 1)[(~clicked) & (truth >= 0)].numpy())
    nodes = np.concatenate(rows)
    out = ["| class | nodes | Θ right % | Θ peak (median) | R right % | R peak (median) | kept % | kept right % |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c, name in enumerate(dataset.classes.names):
        mine = nodes[nodes[:, 0] == c]
        if len(mine) == 0:
            continue
        kept = mine[:, 5] > 0
        r_cells = "- | -" if relation is None else f"{100 * np.mean(mine[:, 3] == c):.1f} | {np.median(mine[:, 4]):.2f}"
        out.append(f"| {name} | {len(mine)} | {100 * np.mean(mine[:, 1] == c):.1f} | {np.median(mine[:, 2]):.2f} | "
                   f"{r_cells} | {100 * kept.mean():.1f} | "
                   f"{100 * np.mean(kept & (mine[:, 6] == c)):.1f} |")
    return out


def prototype_table(predictor: OtocFullPredictor, dataset: Dataset) -> list[str]:
    """Markdown rows of part 3: nearest other prototype per class and the largest logit margin it allows."""
    prototypes = prototypes_of(predictor.modules)
    if prototypes is None:
        return ["(no relation network in this run)"]
    unit = torch.nn.functional.normalize(prototypes.double(), dim=1)
    cosine = unit @ unit.t()
    cosine.fill_diagonal_(-2.0)  # never its own nearest
    names = dataset.classes.names
    temperature = predictor.config.temperature
    rows = ["| class | nearest prototype | cosine | largest logit margin (nats) |", "|---|---|---:|---:|"]
    for c, name in enumerate(names):
        if not bool(prototypes[c].abs().sum() > 0):
            rows.append(f"| {name} | (never sampled) | - | - |")
            continue
        other = int(cosine[c].argmax())
        value = float(cosine[c, other])
        margin = float(np.sqrt(max(2.0 - 2.0 * value, 0.0))) / temperature
        rows.append(f"| {name} | {names[other]} | {value:.3f} | {margin:.1f} |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset with super-voxels")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a 1T1C training checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="the run's clicks seed")
    parser.add_argument("--scenes", type=int, default=6, help="train rooms scored in part 2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = Dataset(args.data)
    try:
        stored = stored_label_table(args.checkpoint, dataset)
        predictor = OtocFullPredictor.from_checkpoint(args.checkpoint)
        nodes = unclicked_node_table(predictor, dataset, args.seed, args.scenes)
        prototypes = prototype_table(predictor, dataset)
    except CheckpointError as exc:
        raise SystemExit(str(exc)) from None
    print(f"# Pseudo-label audit of {args.checkpoint}\n\n## Stored pseudo labels, per ground-truth class\n")
    print("\n".join(stored))
    print(f"\n## Super-voxels without a click (first {args.scenes} train rooms), per majority class\n")
    print("\n".join(nodes))
    print("\n## R's class prototypes: nearest other class\n")
    print("\n".join(prototypes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
