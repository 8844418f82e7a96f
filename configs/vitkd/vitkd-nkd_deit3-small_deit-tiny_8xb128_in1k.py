# ViTKD + NKD (T = 1, gamma = 1, NKD's ViT setting): the paper's best
# DeiT-Tiny students. The target class of a mixed image is the arg-max of its
# soft label.
_base_ = ['./vitkd_deit3-small_deit-tiny_8xb128_in1k.py']

model = dict(
    losses=dict(
        loss_nkd=dict(
            type='NKDLoss',
            temperature=1.0,
            gamma=1.0,
            inputs=dict(
                logits_s='logits_s', logits_t='logits_t', labels='labels'))))
