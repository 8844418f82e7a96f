# Data-free DearKD on digits: the digits DearKD config (patch 8) trained on
# images synthesised from its teacher, not on the digits; validation and
# test stay on the real val split. First synthesise (400 images, about 3
# minutes on 2 cores):
#   python tools/synthesize.py \
#       configs/dearkd/synthesis/deepinversion-intra-div_resnet18-c16_digits.py \
#       --out data/digits_synth --cfg-options teacher.checkpoint=<teacher>
# then train with --cfg-options model.teacher.checkpoint=<teacher>
# (make dearkd-datafree-digits does both for 3 seeds).
_base_ = ['./dearkd_resnet18-c16_vit-t4-p8_1xb64_digits.py']

train_dataloader = dict(dataset=dict(data_root='data/digits_synth'))
