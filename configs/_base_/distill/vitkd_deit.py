# ViTKD's wiring for DeiT students and DeiT III teachers (mmpretrain
# backbones): what is tapped, the connectors and which loss reads what.
# Configs use {{_base_.vitkd_taps}} / {{_base_.vitkd_connectors}} /
# {{_base_.vitkd_losses}}. The connectors' widths depend on the pair; left
# out, the build-time dry run measures them:
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
vitkd_connectors = dict(
    mimic0=dict(type='LinearConnector'),
    mimic1=dict(type='LinearConnector'),
    gen=dict(type='ViTKDGenerator', mask_ratio=0.5))
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

# What the paper configs (configs/vitkd/*_in1k.py, the NKD DeiT config) take
# from the authors' code where mmpretrain's DeiT recipe, their base, says it
# otherwise. The code of the paper's rows is yzd-v/cls_KD's master branch
# (mmcls 0.x; its README links the configs there; the mmcls 1.0 branch is a
# later port). tests/configs/test_vitkd_recipe.py cites the lines.
#
# The lr: mmcv's cosine runs per iteration over all 300 epochs and the
# 20-epoch linear warm-up from 1e-3 x lr scales it (cls_KD master,
# configs/_base_/schedules/imagenet_bs1024_adamw_swin.py). Two mmengine
# schedulers over one another, both per iteration, draw that curve;
# mmpretrain's starts its cosine after the warm-up and steps it per epoch.
paper_param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=20,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=0,
        end=300,
        convert_to_iter_based=True),
]
# The teacher: the authors' distiller puts it in eval mode once, when built;
# mmcv's runner calls model.train() every epoch and that reaches it, so it
# ran in train mode. Its DeiT III config has no drop-path (the Deit_3
# backbone's default, 0), so train mode changed nothing. Merged into the
# teacher spec: train mode, as published, with that config's drop-path 0
# (mmpretrain's DeiT III configs set 0.05 / 0.2 / 0.45).
paper_teacher = dict(
    train_mode=True,
    override=dict(backbone=dict(type='FixedDeiT3', drop_path_rate=0.)))
