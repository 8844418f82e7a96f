# Label-free feature distillation on digits: no label is ever read. A bare
# 4x32 ViT backbone (no head) learns the DeiT III 6x128 teacher's features
# after its final norm through linear projectors: the class token by a
# cosine loss, the patch tokens by mean-squared error. Validation: k-NN on
# the student's class token (see the frame).
_base_ = ['../_base_/distill/label-free_deit3-6x128-p8_vit-4x32-p8_digits.py']

model = dict(
    taps=dict(
        s_cls=dict(path='ln1', selector='cls_token'),
        s_patch=dict(path='ln1', selector='patch_tokens'),
        t_cls=dict(model='teacher', path='backbone.ln1',
                   selector='cls_token'),
        t_patch=dict(model='teacher', path='backbone.ln1',
                     selector='patch_tokens')),
    connectors=dict(
        proj_cls=dict(type='LinearConnector', in_channels=32,
                      out_channels=128),
        proj_patch=dict(type='LinearConnector', in_channels=32,
                        out_channels=128)),
    losses=dict(
        loss_cls_cos=dict(
            type='FeatureCosineLoss',
            inputs=dict(preds='proj_cls(s_cls)', targets='t_cls')),
        loss_patch_mse=dict(
            type='FeatureMSELoss',
            reduction='mean',
            inputs=dict(preds='proj_patch(s_patch)', targets='t_patch'))),
)
