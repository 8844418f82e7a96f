# DearKD-Ti on 25 % of ImageNet-1k's training images (the paper's
# partial-ImageNet rows): a fixed, class-balanced draw with seed 0
# (SubsetDataset: round(0.25 x n) of every class, about 320 k images, the same
# in every run, rank and resumed run). Same 300 epochs, so a quarter of the
# steps. Validation on the full val split.
_base_ = ['./dearkd_regnety-160_deit-tiny_4xb256_in1k.py']

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='SubsetDataset',
        fraction=0.25,
        seed=0,
        dataset={{_base_.train_dataloader.dataset}}))
