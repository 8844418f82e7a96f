# vit-t4-p8_1xb64_digits.py
# on a fixed 25 % of the digits
# training images: a class-balanced draw with seed 0 (SubsetDataset),
# the same images in every run and seed. Same epochs, so a quarter of
# the steps.
_base_ = ['../digits/vit-t4-p8_1xb64_digits.py']

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='SubsetDataset',
        fraction=0.25,
        seed=0,
        dataset={{_base_.train_dataloader.dataset}}))
