# DeepInversion from the RegNetY-16GF ImageNet teacher (DeiT's teacher),
# with the paper's setting: from N(0, 1) noise, 2k iterations at 112 px then
# 1k at 224 px, Adam(lr 0.25, betas (0.5, 0.9)) with a 100-iteration warm-up
# and a cosine lr per phase (DeepInversion's code), +-30 px jitter and
# flips, CE + 1e-4 TV-L2 + 1e-5 L2 + 0.01 BN statistics (x10 on the first
# BN layer).
#
# 100 images per class (100k images, 782 batches of 128, 3000 teacher
# forward/backward passes each; not timed yet): spread it over GPUs:
#   torchrun --nproc_per_node 8 tools/synthesize.py \
#       configs/dearkd/synthesis/deepinversion_regnety-160_in1k.py \
#       --out data/deepinversion_in1k --launcher pytorch
# More or fewer images: --cfg-options synthesis.num_images=<n> (a multiple of
# 1000 keeps the classes balanced). ADI: add a student spec, e.g.
# student=dict(config=..., checkpoint=...) in a child config; its weight is
# synthesis.weights.adaptive (0.2, at T=3).
_base_ = ['../../_base_/teachers/regnety-160_in1k.py']
default_scope = 'cls_kd'

# The timm checkpoint was trained on RGB inputs normalised with ImageNet's
# mean/std (0-255 scale), like mmpretrain's ImageNet pipelines.
teacher = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True))

synthesis = dict(
    num_images=100_000,
    batch_size=128,
    seed=0,
    phases=[dict(size=112, iters=2000), dict(size=224, iters=1000)],
    lr=0.25,
    # DeepInversion's code: lr_cosine_policy(lr, 100, iterations), a linear
    # warm-up over the first 100 iterations of each phase, then the cosine.
    warmup_iters=100,
    betas=(0.5, 0.9),
    jitter=30,
    flip=True,
    weights=dict(tv=1e-4, l2=1e-5, bn=0.01, first_bn=10., adaptive=0.2),
    adaptive_temperature=3.,
    log_interval=200)
