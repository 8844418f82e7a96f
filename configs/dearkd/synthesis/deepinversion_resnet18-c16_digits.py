# DeepInversion from the digits teacher (narrow ResNet-18): 500 gray 32x32
# images, 50 per class, in 5 batches of 100 (each with every digit 10
# times); 15-35 s a batch on 2 CPU cores. The teacher's
# checkpoint comes from the command line:
#   python tools/synthesize.py \
#       configs/dearkd/synthesis/deepinversion_resnet18-c16_digits.py \
#       --out data/digits_synth --cfg-options teacher.checkpoint=<teacher.pth>
# The paper's ImageNet setting scaled down: a half-size phase first (2:1
# iterations as 2k at 112 px : 1k at 224 px), jitter 30/224 of the image ~
# 4/32 px; no flips (a mirrored digit is no digit and the teacher never saw
# one); gray images, as the digits are. The digits are 8x8 images upscaled
# to 32x32, hence smooth: a TV weight 100x the paper's (1e-2) removes the
# pixel noise the short full-size phase leaves; the teacher (99.4% on the
# digits val split) classifies ~95% of the images as their targets.
default_scope = 'cls_kd'

teacher = dict(
    config='{{fileDirname}}/../../digits/resnet18-c16_1xb64_digits.py',
    checkpoint=None)

synthesis = dict(
    num_images=500,
    batch_size=100,
    seed=0,
    phases=[dict(size=16, iters=60), dict(size=32, iters=30)],
    lr=0.25,
    betas=(0.5, 0.9),
    jitter=4,
    flip=False,
    grayscale=True,
    weights=dict(tv=1e-2, l2=1e-5, bn=0.01, first_bn=10.),
    log_interval=30)
