# AttnDistill on digits, label-free: ViT 4x64 (patch 8, 4 heads, trained
# supervised by configs/digits/vit-t4-p8_1xb64_digits.py) -> a bare ViT
# 4x32 (patch 8, 4 heads) from scratch. L = 1.0 L_c + 0.1 L_a:
# the student's last-block class token through the AttnDistill projector
# vs the teacher's class token after its final norm (mean-MSE), and the
# last block's class-token attention rows (KL, clamped, tau = 10). Both
# models have a 4x4 patch grid and 4 heads: no resize, no head aggregation.
# Non-finite steps are skipped on every rank, as the paper's recipe does.
_base_ = ['../_base_/distill/label-free_vit-4x64-p8_vit-4x32-p8_digits.py']

attn_row = dict(type='attn_probs', query='cls')
model = dict(
    taps=dict(
        s_cls=dict(path='layers.3', selector='cls_token'),  # before ln1
        s_attn=dict(path='layers.3.attn', selector=attn_row),
        t_cls=dict(model='teacher', path='backbone.ln1',
                   selector='cls_token'),
        t_attn=dict(model='teacher', path='backbone.layers.3.attn',
                    selector=attn_row)),
    connectors=dict(
        proj=dict(type='AttnDistillProjector', in_channels=32,
                  out_channels=64)),
    losses=dict(
        loss_align=dict(
            type='AttnDistillAlignLoss',
            loss_weight=1.0,
            inputs=dict(preds='proj(s_cls)', targets='t_cls')),
        loss_attn=dict(
            type='AttnDistillAttentionLoss',
            loss_weight=0.1,
            tau=10.0,
            clamp=(1e-5, 0.996),
            inputs=dict(attn_s='s_attn', attn_t='t_attn'))),
)
optim_wrapper = dict(
    type='NonFiniteGuardOptimWrapper', max_consecutive_skips=10)
