# ViTKD's ImageNet-1k configs: ./deit3_deit_in1k.py with ViTKD's taps, losses
# and connectors (./vitkd_deit.py; their widths, D_s -> D_t, are measured by
# the build-time dry run), batch 1024 = 8 GPUs x 128. Children set the
# student's arch and the teacher, as in ./deit3_deit_in1k.py.
_base_ = ['./deit3_deit_in1k.py']

model = dict(
    taps={{_base_.vitkd_taps}},
    connectors={{_base_.vitkd_connectors}},
    losses={{_base_.vitkd_losses}},
)

train_dataloader = dict(batch_size=128)
