# DearKD's data-free synthesis on digits: the DeepInversion digits setting
# plus the boundary-preserving intra-class divergence (our formulation, see
# cls_kd.datafree.losses.intra_divergence_loss). A batch of 100 holds 10
# images of each digit, the pairs the diversity term pushes apart.
#   python tools/synthesize.py \
#       configs/dearkd/synthesis/deepinversion-intra-div_resnet18-c16_digits.py \
#       --out data/digits_synth --cfg-options teacher.checkpoint=<teacher.pth>
_base_ = ['./deepinversion_resnet18-c16_digits.py']

synthesis = dict(
    intra_divergence=dict(diversity=1.0, boundary=1.0, margin=2.0))
