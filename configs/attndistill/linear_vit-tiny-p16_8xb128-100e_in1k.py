# Linear probe (DINO protocol) of the distilled ViT-T/16 backbone (Mugs
# ViT-S/16 teacher). DINO names the read-out for ViT-S (4 last blocks) and
# ViT-B (1 block + pooled patch tokens) only; for ViT-T this keeps
# eval_linear.py's defaults (n_last_blocks = 4, avgpool_patchtokens False),
# as for ViT-S. Everything else as the ViT-S probe.
#   python tools/model_converters/extract_student.py <epoch_800.pth> \
#       checkpoints/attndistill_vit-tiny-p16.pth
_base_ = ['./linear_vit-small-p16_8xb128-100e_in1k.py']

model = dict(
    backbone=dict(
        arch='deit-tiny',
        init_cfg=dict(checkpoint='checkpoints/attndistill_vit-tiny-p16.pth')),
    head=dict(in_channels=192 * 4))  # 4 last blocks' class tokens
