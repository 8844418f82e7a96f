# ViTKD + NKD (T = 1, gamma = 1) on digits, DeiT III 6x128 -> ViT 4x32.
_base_ = ['./vitkd_deit3-6x128-p8_vit-4x32-p8_1xb64_digits.py']

model = dict(
    losses=dict(
        loss_nkd=dict(
            type='NKDLoss',
            temperature=1.0,
            gamma=1.0,
            inputs=dict(
                logits_s='logits_s', logits_t='logits_t', labels='labels'))),
)
