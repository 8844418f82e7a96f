# DeepInversion from the digits teacher (narrow ResNet-18): 400 gray images,
# 40 per class, in 4 batches of 100 (each with every digit 10 times); about
# 40 s a batch on one CPU core. The teacher's checkpoint comes from the
# command line:
#   python tools/synthesize.py \
#       configs/dearkd/synthesis/deepinversion_resnet18-c16_digits.py \
#       --out data/digits_synth --cfg-options teacher.checkpoint=<teacher.pth>
# The digits are 8x8 images that the pipeline resizes to 32x32, so they are
# synthesised as such: 8x8 images (after a 4x4 phase, as the paper's
# half-size phase), shown to the teacher resized to 32x32 (bicubic,
# teacher_size) and written at 8x8, where the training pipeline resizes them
# like the real ones. Optimised at 32x32 the images become high-frequency
# textures that the teacher classifies (97 %) but a student trained on them
# learns nothing from (10 % on the real digits, chance; see
# configs/dearkd/README.md). Jitter 30/224 of the image ~ 1 px of 8; no
# flips (a mirrored digit is no digit and the teacher never saw one); gray
# images, as the digits are; TV 1e-2 (100x the paper's).
default_scope = 'cls_kd'

teacher = dict(
    config='{{fileDirname}}/../../digits/resnet18-c16_1xb64_digits.py',
    checkpoint=None)

synthesis = dict(
    num_images=400,
    batch_size=100,
    seed=0,
    phases=[dict(size=4, iters=30), dict(size=8, iters=50)],
    teacher_size=32,
    lr=0.25,
    # No warm-up: DeepInversion's 100-iteration one is longer than these
    # phases (the README's digits numbers were made without it).
    warmup_iters=0,
    betas=(0.5, 0.9),
    jitter=1,
    flip=False,
    grayscale=True,
    weights=dict(tv=1e-2, l2=1e-5, bn=0.01, first_bn=10.),
    log_interval=30)
