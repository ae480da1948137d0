"""Method tools shared by several papers (import the module you need; nothing here holds state).

``segments``
    ``Segments``, ``segment_sum`` / ``segment_mean`` / ``segment_max`` / ``segment_majority``: per-point values
    pooled per super-voxel / region / primitive (1T1C and Densify: mean; WS3D: max).
``segment_crf``
    ``SegmentGraph``, ``dense_kernel`` / ``topk_kernel`` / ``normalise_graph``, ``mean_field``, ``crf_energy``:
    a Potts CRF on a segment graph (1T1C); its solver also runs the dense point CRF.
``dense_crf``
    ``dense_crf``: fully connected point CRF, xyz Gaussian + xyz-RGB bilateral kernels (MPRM's pseudo labels).
``prototypes``
    ``PrototypeBank`` (momentum memory bank), ``PrototypeSums``, ``contrastive_loss``, ``sample_balanced``,
    ``prototype_probabilities`` (1T1C's relation net; WS3D region contrast; Densify centroids).
``class_weights``
    ``class_weights`` with one ``class_weighting`` vocabulary: none / inverse_sqrt_frequency / inverse_frequency.
``losses``
    ``point_cross_entropy``: class- and point-weighted CE over the labelled points, as (sum, weight sum).
``adjacency``
    ``region_adjacency`` / ``knn_pairs``: adjacent segment pairs from a k-NN graph (WS3D's pairwise energy).
``options``
    ``MethodOptions``, ``option``: frozen, validated per-method options built by the config loader.
"""
