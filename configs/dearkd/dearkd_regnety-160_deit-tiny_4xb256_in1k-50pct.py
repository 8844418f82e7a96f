# DearKD-Ti on half of ImageNet-1k's training images: a fixed,
# class-balanced draw with seed 0 (SubsetDataset; the same 640,584 images
# in every run, rank and resumed run). Same 300 epochs, so half the steps.
# Validation on the full val split.
_base_ = ['./dearkd_regnety-160_deit-tiny_4xb256_in1k.py']

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='SubsetDataset',
        fraction=0.5,
        seed=0,
        dataset={{_base_.train_dataloader.dataset}}))
