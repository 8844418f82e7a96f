# DearKD's data-free synthesis: DeepInversion from the RegNetY-16GF teacher
# plus the boundary-preserving intra-class divergence (our formulation, see
# cls_kd.datafree.losses.intra_divergence_loss): same-class images are pushed
# apart in the teacher's penultimate feature space (mean pairwise cosine)
# while a hinge keeps each one at least `margin` logits inside its class.
#   torchrun --nproc_per_node 8 tools/synthesize.py \
#       configs/dearkd/synthesis/deepinversion-intra-div_regnety-160_in1k.py \
#       --out data/dearkd_synth_in1k --launcher pytorch
# The diversity term compares same-class images of a batch: with
# class_repeats=8 a batch of 128 holds 8 images of each of 16 classes (the
# DeepInversion config's batches hold 128 classes once).
_base_ = ['./deepinversion_regnety-160_in1k.py']

synthesis = dict(
    class_repeats=8,
    intra_divergence=dict(diversity=1.0, boundary=1.0, margin=2.0))
