# NKD alone on digits, DeiT III 6x128 -> ViT 4x32, with the setting ViTKD
# pairs it with (T = 1, gamma = 1): the logit-only row of the digits ViTKD
# experiment.
_base_ = ['../_base_/distill/deit3-6x128-p8_vit-4x32-p8_digits.py']

model = dict(
    losses=dict(
        loss_nkd=dict(
            type='NKDLoss',
            temperature=1.0,
            gamma=1.0,
            inputs=dict(
                logits_s='logits_s', logits_t='logits_t', labels='labels'))),
)
