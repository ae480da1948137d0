"""1T1C ("One Thing One Click", Liu et al., CVPR 2021) building blocks, called by the ``otoc`` method plugin.

Segment pooling, the segment-graph CRF, prototypes and class weights are shared method tools
(:mod:`wsseg_training.methods.common`); the names below re-export them where 1T1C uses them.

Public API::

    OtocConfig                                   every hyper-parameter (config.py)
    expand_clicks, initial_pseudo_labels, object_classes, next_pseudo_labels, point_pseudo_labels, coverage,
    pseudo_label_confusion
                                                 pseudo labels Y_0 .. Y_t (pseudo_labels.py)
    Segments, segment_mean, segment_majority, pool_nodes, SupervoxelNodes
                                                 super-voxel pooling, Eq. 2 (pooling.py)
    build_relation_net, PrototypeBank, contrastive_loss, sample_balanced, relation_loss, batch_prototypes,
    relation_probabilities, combine_probabilities, class_sums, prototypes_from_sums
                                                 relation network R, Eq. 6-7 (relation.py)
    SupervoxelGraph, kernel_features, build_graph, graph_for_nodes
                                                 super-voxel graph, Eq. 5 (graph.py)
    mean_field, crf_energy, unary_from_probabilities
                                                 CRF, Eq. 3-4 (crf.py)
    propagate, propagate_scene, Propagation, select_confident, supervoxel_confidence, point_confidence
                                                 fuse + propagate + Eq. 8 (propagate.py)
"""

from wsseg_training.methods.common.segment_crf import crf_energy, mean_field, unary_from_probabilities
from wsseg_training.methods.common.segments import Segments, segment_majority, segment_mean, segment_sum
from wsseg_training.methods.otoc.config import VARIANTS, OtocConfig
from wsseg_training.methods.otoc.graph import SupervoxelGraph, build_graph, graph_for_nodes, kernel_features
from wsseg_training.methods.otoc.pooling import SupervoxelNodes, pool_nodes
from wsseg_training.methods.otoc.propagate import (
    Propagation,
    point_confidence,
    propagate,
    propagate_scene,
    select_confident,
    select_nodes,
    supervoxel_confidence,
)
from wsseg_training.methods.otoc.pseudo_labels import (
    clicked_supervoxel_mask,
    coverage,
    expand_clicks,
    initial_pseudo_labels,
    next_pseudo_labels,
    object_classes,
    point_pseudo_labels,
    pseudo_label_confusion,
)
from wsseg_training.methods.otoc.relation import (
    PrototypeBank,
    batch_prototypes,
    build_relation_net,
    class_sums,
    combine_probabilities,
    contrastive_loss,
    prototype_logits,
    prototypes_from_sums,
    relation_loss,
    relation_probabilities,
    sample_balanced,
)

__all__ = [
    "VARIANTS", "OtocConfig", "Propagation", "PrototypeBank", "Segments", "SupervoxelGraph", "SupervoxelNodes",
    "batch_prototypes", "build_graph", "build_relation_net", "class_sums", "clicked_supervoxel_mask",
    "combine_probabilities", "contrastive_loss", "coverage", "crf_energy", "expand_clicks", "graph_for_nodes",
    "initial_pseudo_labels", "kernel_features", "mean_field", "next_pseudo_labels", "object_classes",
    "point_confidence", "point_pseudo_labels", "pool_nodes",
    "propagate", "propagate_scene", "prototype_logits", "prototypes_from_sums", "pseudo_label_confusion",
    "relation_loss", "relation_probabilities", "sample_balanced", "segment_majority", "segment_mean",
    "segment_sum", "select_confident", "select_nodes", "supervoxel_confidence", "unary_from_probabilities",
]
