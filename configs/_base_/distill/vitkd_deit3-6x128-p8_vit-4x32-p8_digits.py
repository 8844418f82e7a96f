# The digits ViTKD wiring: the DeiT III 6x128 -> ViT 4x32 frame with
# ViTKD's taps and losses (vitkd_deit.py) and the connectors for these widths
# (32 -> 128). Children override only what differs, e.g.
#   model = dict(losses=dict(loss_vitkd_mimic=dict(alpha=1e-4)))
_base_ = [
    './deit3-6x128-p8_vit-4x32-p8_digits.py',
    './vitkd_deit.py',
]

model = dict(
    taps={{_base_.vitkd_taps}},
    connectors=dict(
        mimic0=dict(type='LinearConnector', in_channels=32, out_channels=128),
        mimic1=dict(type='LinearConnector', in_channels=32, out_channels=128),
        gen=dict(type='ViTKDGenerator', in_channels=32, out_channels=128,
                 mask_ratio=0.5)),
    losses={{_base_.vitkd_losses}},
)
