# ViTKD's wiring for DeiT students and DeiT III teachers (mmpretrain
# backbones): what is tapped and which loss reads what. Configs use
# {{_base_.vitkd_taps}} / {{_base_.vitkd_losses}} and add the connectors,
# whose widths depend on the pair:
#   mimic0, mimic1: LinearConnector(D_s -> D_t), one per mimicked block;
#   gen: ViTKDGenerator(D_s -> D_t).
# Shallow blocks 0 and 1 are mimicked (also for a 24-block teacher); the last
# block's tokens after the final LayerNorm (backbone.ln1) are generated.
# patch_tokens drops the class (and distillation/register) tokens.
vitkd_taps = dict(
    s_block0=dict(path='backbone.layers.0', selector='patch_tokens'),
    s_block1=dict(path='backbone.layers.1', selector='patch_tokens'),
    s_last=dict(path='backbone.ln1', selector='patch_tokens'),
    t_block0=dict(model='teacher', path='backbone.layers.0',
                  selector='patch_tokens'),
    t_block1=dict(model='teacher', path='backbone.layers.1',
                  selector='patch_tokens'),
    t_last=dict(model='teacher', path='backbone.ln1',
                selector='patch_tokens'),
)
vitkd_losses = dict(
    loss_vitkd_mimic=dict(
        type='ViTKDMimicLoss',
        alpha=3e-5,
        inputs=dict(
            preds=['mimic0(s_block0)', 'mimic1(s_block1)'],
            targets=['t_block0', 't_block1'])),
    loss_vitkd_gen=dict(
        type='ViTKDGenerationLoss',
        beta=3e-6,
        mask_ratio=0.5,
        inputs=dict(
            preds='gen(s_last).preds',
            targets='t_last',
            mask='gen(s_last).mask')),
)
