# The L_c-only ablation of AttnDistill on digits: projector alignment of the
# class token, no attention term (and no attention taps).
_base_ = ['./attndistill_vit-4x64-p8_vit-4x32-p8_1xb64_digits.py']

model = dict(
    taps=dict(
        _delete_=True,
        s_cls=dict(path='layers.3', selector='cls_token'),
        t_cls=dict(model='teacher', path='backbone.ln1',
                   selector='cls_token')),
    losses=dict(
        _delete_=True,
        loss_align=dict(
            type='AttnDistillAlignLoss',
            loss_weight=1.0,
            inputs=dict(preds='proj(s_cls)', targets='t_cls'))),
)
