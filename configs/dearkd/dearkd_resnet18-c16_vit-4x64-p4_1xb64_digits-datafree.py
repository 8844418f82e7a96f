# Data-free DearKD on digits: the digits DearKD config trained on images
# synthesised from its teacher, not on the digits; validation and test stay
# on the real val split. First synthesise (500 images, 2-3 minutes on
# 2 cores):
#   python tools/synthesize.py \
#       configs/dearkd/synthesis/deepinversion-intra-div_resnet18-c16_digits.py \
#       --out data/digits_synth --cfg-options teacher.checkpoint=<teacher>
# then train with --cfg-options model.teacher.checkpoint=<teacher>
# (make dearkd-datafree-digits does both for 3 seeds).
_base_ = ['./dearkd_resnet18-c16_vit-4x64-p4_1xb64_digits.py']

train_dataloader = dict(dataset=dict(data_root='data/digits_synth'))
