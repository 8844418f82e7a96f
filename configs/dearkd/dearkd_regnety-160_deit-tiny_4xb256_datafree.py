# Data-free DearKD-Ti: no real training image. First synthesise images from
# the RegNetY-16GF teacher with DeepInversion + the boundary-preserving
# intra-divergence term:
#   bash tools/dist_synthesize.sh \
#       configs/dearkd/synthesis/deepinversion-intra-div_regnety-160_in1k.py \
#       8 --out data/dearkd_synth_in1k
# (or python tools/synthesize.py ... on one GPU), then train DearKD-Ti on
# that folder (labels are the classes the images were synthesised for);
# validation stays on the real ImageNet val split.
_base_ = ['./dearkd_regnety-160_deit-tiny_4xb256_in1k.py']

synth_root = 'data/dearkd_synth_in1k'

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=synth_root,
        data_prefix='train',
        pipeline={{_base_.train_dataloader.dataset.pipeline}}))
